"""haproxy-lab's building blocks: the validated config model, renderers for what goes to the VMs,
and the Pulumi components (VM, web server, load balancer, lab) that put them on Proxmox VE."""
