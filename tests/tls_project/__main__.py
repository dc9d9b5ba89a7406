"""The lab's generated certificate alone (components/tls.py), served by pulumi-resource-pulumi-python."""

from __future__ import annotations

import pulumi

from components.tls import LabCertificate

names = pulumi.Config().get_object("names") or {"dns": ["haproxy-sam.mvgroup.local"], "ips": ["10.0.0.30"]}
certificate = LabCertificate("certificate", list(names["dns"]), list(names["ips"]))
pulumi.export("caCertificate", certificate.ca_certificate)
pulumi.export("serial", certificate.serial)
pulumi.export("privateKey", certificate.private_key)
