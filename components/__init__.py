"""The Pulumi components: the lab, its load balancer and web servers, each VM and the SSH provisioning steps."""
