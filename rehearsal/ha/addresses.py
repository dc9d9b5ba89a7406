"""The pair's plan on the test network: the stack's HA plan with every address moved into the
rehearsal's private 198.18.0.0/15 subnet (never the plan's own addresses)."""

from __future__ import annotations

import dataclasses
import ipaddress

from plan.model import Host, LabConfig, WebServer
from rehearsal.loopback import planned_servers

VIP_NUMBER = 10
LB_NUMBERS = (11, 12)
FIRST_WEB_NUMBER = 21
CLIENT_NUMBER = 100


def ha_plan(lab: LabConfig, subnet: ipaddress.IPv4Network, web_servers: int | None = None) -> LabConfig:
    """The stack's HA plan with the test network's addresses: VIP .10, load balancers .11 and .12, web
    servers .21..., clients and admins = the test subnet. Names, messages, ports and balance are the plan's."""
    if not lab.is_pair or lab.virtual_ip is None:
        raise ValueError(
            "this stack has no loadBalancer.standby and virtualIp: rehearse the pair with --stack ha "
            "(Pulumi.ha.yaml) or a stack of your own that has them"
        )
    base = subnet.network_address
    servers = tuple(
        WebServer(name=server.name, ip=base + FIRST_WEB_NUMBER + index, message=server.message)
        for index, server in enumerate(planned_servers(lab, web_servers))
    )
    return dataclasses.replace(
        lab,
        network=dataclasses.replace(lab.network, cidr=subnet, gateway=base + 1),
        ssh=dataclasses.replace(lab.ssh, admin_cidr=subnet),
        haproxy=dataclasses.replace(lab.haproxy, client_cidr=subnet),
        load_balancers=tuple(
            Host(name=lb.name, ip=base + number) for lb, number in zip(lab.load_balancers, LB_NUMBERS, strict=True)
        ),
        virtual_ip=base + VIP_NUMBER,
        web_servers=servers,
    )
