"""files/scripts/wait-for-cloud-init.sh.

Run as on a VM with fake system commands: tests/script_harness.py.
"""

from __future__ import annotations

import pytest

from tests.script_harness import (
    Fakes,
    run_script,
)

# --- wait-for-cloud-init.sh -------------------------------------------------------------------


@pytest.mark.parametrize(("status", "ok"), [(0, True), (2, True), (1, False)])
def test_wait_for_cloud_init(fakes: Fakes, status: int, ok: bool) -> None:
    (fakes.state / "cloud-init-rc").write_text(f"{status}\n")
    result = run_script("wait-for-cloud-init.sh", env=fakes.env)
    assert (result.returncode == 0) is ok, result.stderr
    assert "cloud-init status --wait" in fakes.calls()
    if status != 0:
        assert "fake long report" in result.stderr
        assert "cloud-init status --long" in fakes.calls()
