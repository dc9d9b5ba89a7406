"""The rehearsal judges each balance algorithm by what it promises, with real HAProxy and gunicorn.

`balance: source` or `first` are valid plans: the round-robin and recovery checks must pass for them
(each client address keeps its server; the first UP server takes everything), not fail for not rotating.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from plan.model import LabConfig
from rehearsal import checks
from rehearsal.local_lab import LocalLab
from rehearsal.loopback import rehearsal_setup


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("balance", ["source", "first", "leastconn", "random"])
def test_the_report_checks_pass_for_every_balance_algorithm(dev: LabConfig, balance: str, tmp_path: Path) -> None:
    plan = dataclasses.replace(dev, haproxy=dataclasses.replace(dev.haproxy, balance=balance))
    setup = rehearsal_setup(plan, 3)
    with LocalLab(setup.lb, setup.servers, tmp_path) as lab:
        lab.start()
        results = [
            checks.round_robin(lab, balance),
            checks.stats_page(lab),
            checks.failover(lab, 0),
            checks.recovery(lab, 0, balance),
        ]
    for result in results:
        print(f"{balance}: {result.name} {result.result} {result.figures}")
    assert [result.result for result in results] == ["PASS"] * 4, results
