"""The Pulumi program under mocks with the HA plan (Pulumi.ha.yaml): two load balancers behind a VRRP virtual IP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plans import ha_raw
from tests.program_harness import (
    assert_parented_and_uniquely_named,
    commands_of,
    compose_of,
    depends_on,
    evaluate,
    unpack,
)
from tests.pulumi_harness import COMMAND, IMAGE, RULES, SNIPPET, VM, Run, is_secret, run_program, stack_config, unwrap

pytestmark = pytest.mark.timeout(120)

LBS = {
    "haproxy1-sam": ("HAPROXY1-SAM", "10.0.0.33", "10.0.0.34"),
    "haproxy2-sam": ("HAPROXY2-SAM", "10.0.0.34", "10.0.0.33"),
}


@pytest.fixture(scope="module")
def ha_run() -> Run:
    return evaluate(ha_raw())


def keepalived_files(run: Run, host: str) -> dict[str, str]:
    return unpack(commands_of(run, f"haproxy-lab-{host}")["apply-keepalived-conf"].inputs["stdin"])


def test_four_vms_two_load_balancers_and_the_dev_web_servers(ha_run: Run) -> None:
    vms = {r.inputs["name"]: r.inputs for r in ha_run.of_type(VM)}
    assert set(vms) == {"HAPROXY1-SAM", "HAPROXY2-SAM", "WEB1-SAM", "WEB2-SAM"}
    for name, ip, vm_id in (("HAPROXY1-SAM", "10.0.0.33", 133), ("HAPROXY2-SAM", "10.0.0.34", 134)):
        assert vms[name]["vmId"] == vm_id
        assert vms[name]["initialization"]["ipConfigs"] == [{"ipv4": {"address": f"{ip}/16", "gateway": "10.0.0.1"}}]
        assert "load-balancer" in vms[name]["tags"]


def test_each_load_balancer_gets_haproxy_then_keepalived(ha_run: Run) -> None:
    configs = []
    for host in LBS:
        component = f"haproxy-lab-{host}"
        steps = commands_of(ha_run, component)
        assert set(steps) == {
            "cloud-init",
            "install-haproxy",
            "apply-tls-cert",
            "apply-haproxy-cfg",
            "install-keepalived",
            "apply-keepalived-conf",
            # rolling (components/rolling.py): hand the virtual IP off before a reboot or a re-creation, serve again
            "pause",
            "back",
        }
        assert depends_on(ha_run, steps["install-keepalived"], f"{component}-install-haproxy")
        apply = steps["apply-keepalived-conf"]
        assert depends_on(ha_run, apply, f"{component}-install-keepalived")
        assert depends_on(ha_run, apply, f"{component}-apply-haproxy-cfg"), (
            "the track script asks haproxy.cfg's listener"
        )
        assert is_secret(apply.inputs["connection"])
        configs.append(unwrap(steps["apply-haproxy-cfg"].inputs["stdin"]))
    assert configs[0] == configs[1], "both load balancers run the same haproxy.cfg"
    assert "bind *:80" in configs[0]
    assert "monitor-uri /haproxy-alive" in configs[0]


@pytest.mark.parametrize("host", list(LBS))
def test_keepalived_config_is_shipped_with_its_peer_and_the_virtual_ip(ha_run: Run, host: str) -> None:
    name, own, peer = LBS[host]
    files = keepalived_files(ha_run, host)
    assert set(files) == {"keepalived.conf", "check-haproxy.sh"}
    conf = files["keepalived.conf"]
    assert f"router_id {name.lower()}" in conf
    assert f"unicast_src_ip {own}\n" in conf
    assert f"unicast_peer {{\n        {peer}\n    }}" in conf
    assert "10.0.0.30/16 dev eth0" in conf
    assert "state BACKUP" in conf
    assert "nopreempt" in conf
    assert files["check-haproxy.sh"].startswith("#!/bin/sh\n")


def test_firewall_admits_vrrp_between_the_two_load_balancers_only(ha_run: Run) -> None:
    for rules in ha_run.of_type(RULES):
        entries = rules.inputs["rules"]
        vrrp = [rule for rule in entries if rule["proto"] == "vrrp"]
        host = next((h for h in LBS if f"-{h}-" in rules.name), None)
        if host is None:
            assert vrrp == [], f"{rules.name}: web servers take no VRRP"
            http = sorted(rule["source"] for rule in entries if rule.get("dport") == "80")
            assert http == ["10.0.0.33/32", "10.0.0.34/32"], "web servers accept HTTP from both load balancers"
        else:
            assert [rule["source"] for rule in vrrp] == [f"{LBS[host][2]}/32"]
            assert all("dport" not in rule for rule in vrrp)
        assert all(rule["source"] != "0.0.0.0/0" for rule in entries)


def test_outputs_use_the_virtual_ip(ha_run: Run) -> None:
    assert ha_run.exports["lbUrl"] == "https://10.0.0.30/"
    assert ha_run.exports["statsUrl"] == "https://10.0.0.30:8404/stats"
    assert ha_run.exports["loadBalancers"] == {"HAPROXY1-SAM": "10.0.0.33", "HAPROXY2-SAM": "10.0.0.34"}
    assert ha_run.exports["webServers"] == {"WEB1-SAM": "10.0.0.31", "WEB2-SAM": "10.0.0.32"}


def test_web_servers_trust_forwarded_for_from_both_load_balancers(ha_run: Run) -> None:
    for host in ("web1-sam", "web2-sam"):
        environment = compose_of(ha_run, host)["services"]["web"]["environment"]
        assert environment["FORWARDED_ALLOW_IPS"] == "10.0.0.33,10.0.0.34"


def test_two_nodes_spread_the_vms_and_separate_the_pair() -> None:
    plan = ha_raw()
    plan["proxmox"]["node"] = ["pve1", "pve2"]
    run = evaluate(plan)
    nodes = {r.inputs["name"]: r.inputs["nodeName"] for r in run.of_type(VM)}
    assert nodes == {"HAPROXY1-SAM": "pve1", "HAPROXY2-SAM": "pve2", "WEB1-SAM": "pve1", "WEB2-SAM": "pve2"}
    images = {r.inputs["nodeName"]: r for r in run.of_type(IMAGE)}
    assert set(images) == {"pve1", "pve2"}, "one image per node (node-local Import storage)"
    assert images["pve1"].name == "haproxy-lab-ubuntu-image", "the first node's image keeps its resource name"
    for vm in run.of_type(VM):
        node = vm.inputs["nodeName"]
        assert vm.inputs["disks"][0]["importFrom"].startswith("local:import/")
        snippet = run.named(vm.name.removesuffix("-vm") + "-user-data")
        assert snippet.inputs["nodeName"] == node
    for resource in run.of_type(RULES):
        vm_name = resource.name.removesuffix("-firewall-rules") + "-vm"
        assert resource.inputs["nodeName"] == run.named(vm_name).inputs["nodeName"]
    assert not [r.type for r in run.resources if "haresource" in r.type.lower()], "no Proxmox HA (docs/ha.md)"


def test_a_template_on_the_first_node_is_cloned_across() -> None:
    plan = ha_raw()
    plan["proxmox"].update(node=["pve1", "pve2"], templateVmId=9000)
    run = evaluate(plan)
    clones = {r.inputs["name"]: r.inputs["clone"] for r in run.of_type(VM)}
    assert clones["HAPROXY1-SAM"] == {"vmId": 9000, "full": True, "retries": 3}
    assert clones["HAPROXY2-SAM"] == {"vmId": 9000, "full": True, "retries": 3, "nodeName": "pve1"}
    assert run.of_type(IMAGE) == []


def _bad(mutate: Any) -> dict[str, Any]:
    plan = ha_raw()
    mutate(plan)
    return plan


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        pytest.param(
            _bad(lambda p: p["loadBalancer"].pop("virtualIp")),
            "haproxy-lab:loadBalancer.virtualIp: is not set but loadBalancer.standby is",
            id="standby-without-vip",
        ),
        pytest.param(
            _bad(lambda p: p["loadBalancer"].pop("standby")),
            "haproxy-lab:loadBalancer.standby: is not set but loadBalancer.virtualIp is",
            id="vip-without-standby",
        ),
        pytest.param(
            _bad(lambda p: p["loadBalancer"].update(virtualIp="10.0.0.31")),
            "haproxy-lab:loadBalancer.virtualIp: 10.0.0.31 is already used by webServers[0]",
            id="vip-is-a-vm",
        ),
        pytest.param(
            _bad(lambda p: p["loadBalancer"].update(virtualIp="192.168.0.30")),
            "haproxy-lab:loadBalancer.virtualIp: 192.168.0.30 lies outside network.cidr 10.0.0.0/16",
            id="vip-outside",
        ),
        pytest.param(
            _bad(lambda p: p["loadBalancer"].update(virtualIp="10.0.0.1")),
            "haproxy-lab:loadBalancer.virtualIp: 10.0.0.1 is the gateway's address",
            id="vip-gateway",
        ),
        pytest.param(
            _bad(lambda p: p["loadBalancer"]["standby"].update(ip="10.0.0.32")),
            "haproxy-lab:webServers[1].ip: 10.0.0.32 is already used by loadBalancer.standby",
            id="standby-address-taken",
        ),
    ],
)
def test_bad_pairs_are_refused_before_any_resource(plan: dict[str, Any], message: str) -> None:
    config, secret_keys = stack_config(plan)
    run = Run()
    with pytest.raises(Exception, match="invalid stack configuration") as caught:
        run_program(config, secret_keys, run=run)
    assert message in str(caught.value)
    assert run.resources == [], "a bad config must not register any resource"


def test_every_resource_is_parented_and_uniquely_named(ha_run: Run) -> None:
    assert_parented_and_uniquely_named(ha_run)
    assert len(ha_run.of_type(SNIPPET)) == 4
    # Per load balancer: cloud-init, 2 installs, 3 applies (certificate, haproxy.cfg, keepalived.conf), pause,
    # back; per web server: cloud-init, install, deploy, and drain, ready and pause on each load balancer.
    assert len(ha_run.of_type(COMMAND)) == 2 * 8 + 2 * (3 + 2 * 3)


def test_rollouts_drain_and_ready_each_server_on_both_load_balancers(ha_run: Run) -> None:
    for host in ("web1-sam", "web2-sam"):
        steps = commands_of(ha_run, f"haproxy-lab-{host}")
        on = {step: unwrap(steps[step].inputs["connection"])["host"] for step in steps}
        assert on["drain"] == on["ready"] == "10.0.0.33"
        assert on["standby-drain"] == on["standby-ready"] == "10.0.0.34"
        assert depends_on(ha_run, steps["standby-drain"], f"haproxy-lab-{host}-drain")
        assert depends_on(ha_run, steps["deploy-webapp"], f"haproxy-lab-{host}-standby-drain")
        assert depends_on(ha_run, steps["standby-ready"], f"haproxy-lab-{host}-ready")
    web2 = commands_of(ha_run, "haproxy-lab-web2-sam")
    assert depends_on(ha_run, web2["drain"], "haproxy-lab-web1-sam-standby-ready"), "one server at a time"
