"""The fault suite (`kz eval faults`): every fault injected for real, every one survived, nothing lost,
and a re-run gives identical bytes. The PostgreSQL restart runs where the tests may restart the server
(root with pg_ctlcluster, as in CI); elsewhere it says it was not injected and the test skips it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kz_pipelines.defs.faults import run

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_every_fault_is_survived_and_nothing_is_lost(postgres: dict[str, str], tmp_path: Path) -> None:
    restart = os.geteuid() == 0 and shutil.which("pg_ctlcluster") is not None
    result = run(tmp_path, log=lambda _: None, postgres=restart)
    figures = result.figures
    faults = [k for k, v in figures.items() if v in ("survived", "failed", "not injected")]
    assert len(faults) == figures["faults"] >= 12
    not_survived = {k: figures[f"{k}_detail"] for k in faults if figures[k] != "survived"}
    assert not_survived == {}
    assert figures["injected"] == figures["survived"] == figures["faults"]
    assert figures["data_lost"] == 0
    assert all(t.met for t in result.targets.values())
    if restart:
        assert figures["postgres_restart"] == "survived"
