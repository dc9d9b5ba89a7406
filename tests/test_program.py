"""The Pulumi program under Pulumi's mocks: what `pulumi up` would ask Proxmox and the VMs to do."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from plan.app_contract import HEALTH_PATH
from tests.plans import dev_raw, raw_with_servers
from tests.program_harness import (
    ancestors,
    assert_parented_and_uniquely_named,
    bundle_of,
    commands_of,
    compose_of,
    depends_on,
    evaluate,
    vm_named,
)
from tests.pulumi_harness import (
    COMMAND,
    IMAGE,
    OPTIONS,
    RULES,
    TEST_API_TOKEN,
    TEST_PRIVATE_KEY,
    TEST_STATS_PASSWORD,
    VM,
    Run,
    is_secret,
    run_program,
    stack_config,
    unwrap,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def dev_run() -> Run:
    return evaluate(dev_raw())


def test_dev_stack_declares_the_reports_three_vms(dev_run: Run) -> None:
    vms = {r.inputs["name"]: r for r in dev_run.of_type(VM)}
    assert set(vms) == {"HAPROXY-SAM", "WEB1-SAM", "WEB2-SAM"}
    expected = {"HAPROXY-SAM": ("10.0.0.30", 130), "WEB1-SAM": ("10.0.0.31", 131), "WEB2-SAM": ("10.0.0.32", 132)}
    for name, (ip, vm_id) in expected.items():
        vm = vms[name].inputs
        assert vm["vmId"] == vm_id
        assert vm["nodeName"] == "pve"
        assert vm["cpu"]["cores"] == 2
        assert vm["memory"]["dedicated"] == 2048
        assert vm["disks"][0]["size"] == 20
        assert (
            vm["disks"][0]["importFrom"]
            == dev_run.of_type(IMAGE)[0].inputs["datastoreId"]
            + ":import/"
            + (dev_run.of_type(IMAGE)[0].inputs["fileName"])
        )
        assert vm["disks"][0]["interface"] == "virtio0"
        assert vm["bootOrders"] == ["virtio0"]
        assert vm["networkDevices"] == [{"bridge": "vmbr1", "model": "virtio", "firewall": True}]
        assert vm["agent"]["enabled"] is True
        assert vm["stopOnDestroy"] is False, "destroy must shut the guest down cleanly, not pull the plug"
        assert vm["serialDevices"] == [{"device": "socket"}]
        init = vm["initialization"]
        assert init["ipConfigs"] == [{"ipv4": {"address": f"{ip}/16", "gateway": "10.0.0.1"}}]
        assert init["dns"] == {"domain": "mvgroup.local", "servers": ["10.0.200.2", "8.8.8.8"]}
        snippet = dev_run.named(f"haproxy-lab-{name.lower()}-machine-user-data")
        assert init["userDataFileId"] == f"local:snippets/{snippet.inputs['sourceRaw']['fileName']}"
        user_data = snippet.inputs["sourceRaw"]["data"]
        assert user_data.startswith("#cloud-config\n")
        assert f"hostname: {name.lower()}\n" in user_data
        assert "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5" in user_data
        assert snippet.inputs["contentType"] == "snippets"


def test_the_cloud_image_is_downloaded_once_for_all_vms(dev_run: Run) -> None:
    images = dev_run.of_type(IMAGE)
    assert len(images) == 1
    image = images[0].inputs
    assert image["contentType"] == "import"
    assert image["url"].startswith("https://cloud-images.ubuntu.com/noble/")
    assert image["fileName"].endswith(".qcow2")


def test_a_template_vm_id_clones_instead_of_downloading() -> None:
    plan = dev_raw()
    plan["proxmox"]["templateVmId"] = 9000
    run = evaluate(plan)
    assert run.of_type(IMAGE) == []
    for vm in run.of_type(VM):
        assert vm.inputs["clone"] == {"vmId": 9000, "full": True, "retries": 3}
        assert "importFrom" not in vm.inputs["disks"][0]


def test_every_remote_command_targets_its_own_vm_with_the_key_as_a_secret(dev_run: Run) -> None:
    commands = dev_run.of_type(COMMAND)
    # per VM: cloud-init wait, install, then apply/deploy (the LB: its certificate too, TLS being on); the LB's
    # back; per web server on the LB: drain and ready, and pause (before a reboot or a re-creation)
    assert len(commands) == 4 + 3 + 3 + 1 + 2 * 3
    for cmd in commands:
        # A secret anywhere in an object makes the whole object secret on the wire: the key cannot leak.
        assert is_secret(cmd.inputs["connection"]), f"{cmd.name}: the connection carries the SSH private key"
        connection = unwrap(cmd.inputs["connection"])
        owner = dev_run.by_urn(cmd.parent)
        on_lb = cmd.name.endswith(("-drain", "-ready", "-pause"))
        vm = (
            vm_named(dev_run, "HAPROXY-SAM")
            if on_lb
            else next(r for r in dev_run.of_type(VM) if owner.name in ancestors(dev_run, r))
        )
        assert connection["host"] == vm.inputs["initialization"]["ipConfigs"][0]["ipv4"]["address"].split("/")[0]
        assert connection["user"] == "samuel"
        assert connection["privateKey"] == TEST_PRIVATE_KEY
        for line in ("create", "update", "delete"):
            if line in cmd.inputs:
                assert " sudo -n timeout " in cmd.inputs[line], f"{cmd.name}: runs as root within its budget"


def test_remote_commands_wait_for_what_they_must_follow(dev_run: Run) -> None:
    for host in ("haproxy-sam", "web1-sam", "web2-sam"):
        component = f"haproxy-lab-{host}"
        steps = commands_of(dev_run, component)
        assert depends_on(dev_run, steps["cloud-init"], f"{component}-machine-vm")
        assert depends_on(dev_run, steps["cloud-init"], f"{component}-machine-firewall-rules")
        install = "install-haproxy" if host == "haproxy-sam" else "install-docker"
        assert depends_on(dev_run, steps[install], f"{component}-cloud-init")
        # The load balancer installs its certificate before the haproxy.cfg whose `crt` names it.
        last = "apply-tls-cert" if host == "haproxy-sam" else "deploy-webapp"
        assert depends_on(dev_run, steps[last], f"{component}-{install}")
    lb_steps = commands_of(dev_run, "haproxy-lab-haproxy-sam")
    assert depends_on(dev_run, lb_steps["apply-haproxy-cfg"], "haproxy-lab-haproxy-sam-apply-tls-cert")
    # Rolling updates: web2 is drained only once web1 is ready again, and deployed only once drained.
    web2 = commands_of(dev_run, "haproxy-lab-web2-sam")
    assert depends_on(dev_run, web2["drain"], "haproxy-lab-web1-sam-ready")
    assert depends_on(dev_run, web2["deploy-webapp"], "haproxy-lab-web2-sam-drain")


def test_load_balancer_is_provisioned_in_parallel_with_the_web_servers(dev_run: Run) -> None:
    web_names = {r.name for r in dev_run.resources if r.name.startswith(("haproxy-lab-web1", "haproxy-lab-web2"))}
    for cmd in commands_of(dev_run, "haproxy-lab-haproxy-sam").values():
        waited_for = {dev_run.by_urn(urn).name for urn in cmd.dependencies}
        assert not waited_for & web_names, f"{cmd.name} waits for web-server resources: {waited_for & web_names}"


def test_load_balancer_config_lists_every_web_server_and_stays_secret(dev_run: Run) -> None:
    apply = commands_of(dev_run, "haproxy-lab-haproxy-sam")["apply-haproxy-cfg"]
    assert is_secret(apply.inputs["stdin"]), "the rendered haproxy.cfg carries the stats password"
    cfg = unwrap(apply.inputs["stdin"])
    for name, ip in (("WEB1-SAM", "10.0.0.31"), ("WEB2-SAM", "10.0.0.32")):
        assert any(line.split()[:3] == ["server", name, f"{ip}:80"] for line in cfg.splitlines() if line.strip())
    assert TEST_STATS_PASSWORD in cfg
    assert cfg.rstrip("\n").endswith("# haproxy-lab: end of configuration")
    assert is_secret(apply.inputs["triggers"]), "even the config's hash is kept secret"


def test_web_server_deploy_ships_its_own_message(dev_run: Run) -> None:
    for host, message in (("web1-sam", "Serveur 1"), ("web2-sam", "Serveur 2")):
        files = bundle_of(dev_run, host)
        assert {"app.py", "Dockerfile", "compose.yaml", "serve.py", "access_log.py", "requirements.txt"} <= set(files)
        assert compose_of(dev_run, host)["services"]["web"]["environment"]["MESSAGE"] == message


def test_stack_outputs(dev_run: Run) -> None:
    ca = dev_run.exports.pop("caCertificate")
    assert ca.startswith("-----BEGIN CERTIFICATE-----"), "the generated lab CA, for clients to trust"
    assert dev_run.exports == {
        "lbUrl": "https://10.0.0.30/",
        "statsUrl": "https://10.0.0.30:8404/stats",
        "webServers": {"WEB1-SAM": "10.0.0.31", "WEB2-SAM": "10.0.0.32"},
        "statsUser": "admin",
        "statsPassword": {"secret": TEST_STATS_PASSWORD},
        # Read back by the next run (components/rolling.py): which hosts it deployed.
        "deployed": ["haproxy-sam", "web1-sam", "web2-sam"],
    }


def test_every_resource_is_parented_and_uniquely_named(dev_run: Run) -> None:
    assert_parented_and_uniquely_named(dev_run)


def test_secrets_never_appear_in_plain_inputs(dev_run: Run) -> None:
    def plain_text(value: Any) -> str:
        if is_secret(value):
            return ""
        if isinstance(value, dict):
            return " ".join(plain_text(v) for v in value.values())
        if isinstance(value, list):
            return " ".join(plain_text(v) for v in value)
        return str(value)

    for resource in dev_run.resources:
        text = plain_text(resource.inputs)
        for secret in (TEST_STATS_PASSWORD, TEST_PRIVATE_KEY.splitlines()[1], TEST_API_TOKEN):
            assert secret not in text, f"{resource.name} carries a secret in plain text"


def test_firewall_lets_only_the_load_balancer_reach_the_web_servers(dev_run: Run) -> None:
    for options in dev_run.of_type(OPTIONS):
        assert options.inputs["enabled"] is True
        assert options.inputs["inputPolicy"] == "DROP"
    for rules in dev_run.of_type(RULES):
        entries = rules.inputs["rules"]
        assert all(rule["source"] != "0.0.0.0/0" for rule in entries), "no port is open to the world"
        http = [rule for rule in entries if rule.get("dport") == "80"]
        assert len(http) == 1
        if "web" in rules.name:
            assert http[0]["source"] == "10.0.0.30/32"
        else:
            assert http[0]["source"] == "10.0.0.0/16"


@pytest.mark.parametrize("count", [1, 4])
def test_any_number_of_web_servers(count: int) -> None:
    run = evaluate(raw_with_servers(count))
    assert len(run.of_type(VM)) == count + 1
    assert run.exports["webServers"] == {f"WEB{i}-SAM": f"10.0.0.{30 + i}" for i in range(1, count + 1)}
    cfg = unwrap(commands_of(run, "haproxy-lab-haproxy-sam")["apply-haproxy-cfg"].inputs["stdin"])
    servers = [line.split()[1] for line in cfg.splitlines() if line.strip().startswith("server ")]
    assert servers == [f"WEB{i}-SAM" for i in range(1, count + 1)]
    web_rules = [r for r in run.of_type(RULES) if "-web" in r.name]
    assert len(web_rules) == count
    for rules in web_rules:
        http = [rule for rule in rules.inputs["rules"] if rule.get("dport") == "80"]
        assert [rule["source"] for rule in http] == ["10.0.0.30/32"], "only the load balancer reaches the app"
    steps = [commands_of(run, f"haproxy-lab-web{i}-sam") for i in range(1, count + 1)]
    for previous, current in itertools.pairwise(steps):
        assert depends_on(run, current["drain"], previous["ready"].name)


def _comparable(run: Run) -> str:
    def plain(value: Any) -> Any:
        if is_secret(value):
            return {"secret": plain(unwrap(value))}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return json.dumps(sorted((r.type, r.name, plain(r.inputs)) for r in run.resources), sort_keys=True, default=str)


def test_two_evaluations_give_identical_inputs(dev_run: Run) -> None:
    assert _comparable(evaluate(dev_raw())) == _comparable(dev_run)


def _bad(mutate: Any) -> dict[str, Any]:
    plan = dev_raw()
    mutate(plan)
    return plan


BAD_PLANS = [
    pytest.param(
        _bad(lambda p: p["webServers"][0].update(ip="10.1.0.31")),
        "haproxy-lab:webServers[0].ip: 10.1.0.31 lies outside network.cidr 10.0.0.0/16",
        id="address-outside-network",
    ),
    pytest.param(
        _bad(lambda p: p["webServers"][1].update(ip="10.0.0.31")),
        "haproxy-lab:webServers[1].ip: 10.0.0.31 is already used by webServers[0]",
        id="duplicate-address",
    ),
    pytest.param(
        _bad(lambda p: p["loadBalancer"].update(ip="10.0.0.1")),
        "haproxy-lab:loadBalancer.ip: 10.0.0.1 is the gateway's address",
        id="gateway-address",
    ),
    pytest.param(
        _bad(lambda p: p["webServers"][0].update(ip="not-an-ip")),
        "haproxy-lab:webServers[0].ip: 'not-an-ip' is not an IPv4 address",
        id="not-ipv4",
    ),
    pytest.param(_bad(lambda p: p.update(webServers=[])), "haproxy-lab:webServers: is empty", id="no-web-servers"),
    pytest.param(
        _bad(lambda p: p["webServers"][1].update(name="web1-sam")),
        "haproxy-lab:webServers[1].name: 'web1-sam' is already used by webServers[0]",
        id="duplicate-name",
    ),
    pytest.param(
        _bad(lambda p: p["network"].update(gateway="192.168.1.1")),
        "haproxy-lab:network.gateway: 192.168.1.1 lies outside network.cidr 10.0.0.0/16",
        id="gateway-outside-network",
    ),
    pytest.param(
        _bad(lambda p: p["haproxy"].update(balance="fastest")),
        "haproxy-lab:haproxy.balance: 'fastest' is not a balance algorithm",
        id="unknown-balance",
    ),
]


@pytest.mark.parametrize(("plan", "message"), BAD_PLANS)
def test_bad_config_is_refused_before_any_resource(plan: dict[str, Any], message: str) -> None:
    config, secret_keys = stack_config(plan)
    run = Run()
    with pytest.raises(Exception, match="invalid stack configuration") as caught:
        run_program(config, secret_keys, run=run)
    assert message in str(caught.value)
    assert run.resources == [], "a bad config must not register any resource"


@pytest.mark.parametrize(
    ("secrets", "plain", "message"),
    [
        pytest.param(
            {"haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY, "proxmoxve:apiToken": TEST_API_TOKEN},
            {},
            "haproxy-lab:statsPassword: is not set; expected a secret: run `pulumi config set --secret "
            'haproxy-lab:statsPassword "$(openssl rand -base64 24)"`',
            id="missing-stats-password",
        ),
        pytest.param(
            {"haproxy-lab:statsPassword": TEST_STATS_PASSWORD, "proxmoxve:apiToken": TEST_API_TOKEN},
            {"haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY},
            "haproxy-lab:sshPrivateKey: is stored in plain text in the stack file",
            id="plain-text-private-key",
        ),
        pytest.param(
            {"haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY, "haproxy-lab:statsPassword": TEST_STATS_PASSWORD},
            {},
            "proxmoxve:apiToken: is not set",
            id="missing-proxmox-token",
        ),
        pytest.param(
            {
                "haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY,
                "haproxy-lab:statsPassword": "short",
                "proxmoxve:apiToken": TEST_API_TOKEN,
            },
            {},
            "haproxy-lab:statsPassword: is shorter than 12 characters",
            id="weak-stats-password",
        ),
    ],
)
def test_missing_or_plain_secrets_are_refused_with_the_command_to_fix_them(
    secrets: dict[str, str], plain: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("PROXMOX_VE_API_TOKEN", "PROXMOX_VE_USERNAME", "PROXMOX_VE_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    config, secret_keys = stack_config(dev_raw(), secrets=secrets, plain=plain)
    run = Run()
    with pytest.raises(Exception, match="invalid stack configuration") as caught:
        run_program(config, secret_keys, run=run)
    assert message in str(caught.value)
    assert run.resources == [], "a bad config must not register any resource"


def test_hostile_messages_travel_as_data_never_as_commands() -> None:
    hostile = "Serveur 1'; rm -rf / #\" $(id) `id` ${HOME} && backend evil"
    plan = dev_raw()
    plan["webServers"][0]["message"] = hostile
    run = evaluate(plan)
    deploy = commands_of(run, "haproxy-lab-web1-sam")["deploy-webapp"]
    assert hostile not in deploy.inputs["create"], "user text must never reach a command line"
    compose = compose_of(run, "web1-sam")
    # Compose's own `$` escaping ($$) is checked against Docker Compose itself in test_compose.py.
    assert compose["services"]["web"]["environment"]["MESSAGE"].replace("$$", "$") == hostile
    cfg = unwrap(commands_of(run, "haproxy-lab-haproxy-sam")["apply-haproxy-cfg"].inputs["stdin"])
    assert hostile not in cfg
    for cmd in run.of_type(COMMAND):
        for line in ("create", "update", "delete"):
            text = cmd.inputs.get(line) or ""
            assert "backend evil" not in text, f"{cmd.name}: the message leaked into a command line"


def test_the_app_contract_reaches_haproxy_and_compose() -> None:
    """haproxy.cfg checks the contract's health path; each compose file trusts X-Forwarded-For from the LB only."""
    run = evaluate(dev_raw())
    cfg = unwrap(commands_of(run, "haproxy-lab-haproxy-sam")["apply-haproxy-cfg"].inputs["stdin"])
    assert any("http-check send" in line and f"'{HEALTH_PATH}'" in line for line in cfg.splitlines())
    for host in ("web1-sam", "web2-sam"):
        environment = compose_of(run, host)["services"]["web"]["environment"]
        assert "HEALTH_PATH" not in environment
        assert environment["FORWARDED_ALLOW_IPS"] == "10.0.0.30", "the server trusts X-Forwarded-For from the LB only"
