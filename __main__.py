"""haproxy-lab: stack config -> validated model -> Lab component -> stack outputs."""

import pulumi

from components.lab import Lab, LabArgs
from components.rolling import DEPLOYED, read_previous
from plan.config import load_config
from plan.model import ConfigError

try:
    lab_config, secrets = load_config()
except ConfigError as error:
    # RunError prints our message alone, without a Python traceback; nothing has been declared yet.
    raise pulumi.RunError(str(error)) from None

# The stack's own previous outputs: which hosts it deployed. A new stack (or one deployed before this version)
# has none: its first `pulumi up` provisions every VM in parallel (components/rolling.py).
lab = Lab("haproxy-lab", LabArgs(lab=lab_config, secrets=secrets, previous=read_previous()))

pulumi.export("lbUrl", lab.lb_url)
pulumi.export("statsUrl", lab.stats_url)
pulumi.export("webServers", lab.web_servers)
if lab_config.is_pair:
    # The pair's own addresses (each stats page answers there too); lbUrl and statsUrl use the virtual IP.
    pulumi.export("loadBalancers", lab.load_balancers)
if lab.ca_certificate is not None:
    # The generated lab CA: clients trust it to verify the site (README, "HTTPS").
    pulumi.export("caCertificate", lab.ca_certificate)
pulumi.export("statsUser", lab_config.haproxy.stats_user)
pulumi.export("statsPassword", secrets.stats_password)
# Read back by the next run: known once every VM's last step is done (each load balancer back, each web server
# ready): an up that failed before leaves the previous value, so the next run does not take VMs that never
# served for deployed ones.
done = [lb.back.id for lb in lab.balancers] + [server.rolled_out.id for server in lab.servers]
pulumi.export(DEPLOYED, pulumi.Output.all(*done).apply(lambda _: sorted(host.key for host in lab_config.hosts)))
