"""remote.Command resources as the stack config describes them (tests/test_command_plugin.py).

Config: `connection` (host, port, user; dial settings), the secret `privateKey`, and `commands`: a map
of resource name to its arguments in the SDK's camelCase (`create`, `update`, `delete`, `environment`,
`stdin`, `triggers`, `logging`, `addPreviousOutputInEnv`), plus `secretStdin` (stdin as a secret),
`timeout` (the custom timeout of create, update and delete) and `connection` (overrides).
Each command's id, stdout and stderr are exported under its name.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_command as command

config = pulumi.Config()
defaults: dict[str, Any] = config.require_object("connection")
private_key = config.require_secret("privateKey")

for name, spec in config.require_object("commands").items():
    conn = {**defaults, **spec.get("connection", {})}
    stdin = spec.get("stdin")
    timeout = spec.get("timeout")
    cmd = command.remote.Command(
        name,
        connection=command.remote.ConnectionArgs(
            host=conn["host"],
            port=conn.get("port"),
            user=conn.get("user"),
            private_key=private_key,
            dial_error_limit=conn.get("dialErrorLimit"),
            per_dial_timeout=conn.get("perDialTimeout"),
        ),
        create=spec.get("create"),
        update=spec.get("update"),
        delete=spec.get("delete"),
        environment=spec.get("environment"),
        stdin=pulumi.Output.secret(stdin) if spec.get("secretStdin") and stdin is not None else stdin,
        triggers=spec.get("triggers"),
        logging=spec.get("logging"),
        add_previous_output_in_env=spec.get("addPreviousOutputInEnv"),
        opts=pulumi.ResourceOptions(
            custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout, delete=timeout) if timeout else None
        ),
    )
    pulumi.export(name, {"id": cmd.id, "stdout": cmd.stdout, "stderr": cmd.stderr})
