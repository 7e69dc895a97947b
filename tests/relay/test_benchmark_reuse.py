"""The fundus relay benchmark reuses a finished phase only when budget, seed, strategies and settings all match."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "tasks" / "relay"))
    sys.modules.pop("common", None)  # tasks/fundus has a module of the same name
    try:
        return importlib.import_module("benchmark_fundus")
    finally:
        sys.path.remove(str(ROOT / "tasks" / "relay"))


def test_run_phase_reuses_only_a_matching_finished_phase(tmp_path: Path) -> None:
    bench = _bench()
    budget = {"epochs": 6, "max_train": 96, "max_test": 8, "gen_epochs": 10}
    done = {"budget": budget, "seed": 0, "wall_s": 12.0,
            "runs": [{"strategy": "lwf", "settings": {"alpha": 1.0}}, {"strategy": "naive", "settings": {}}]}
    (tmp_path / "relay_results.json").write_text(json.dumps(done))
    calls = []

    def run() -> dict:  # type: ignore[type-arg]
        calls.append(1)
        return {"fresh": True}

    assert bench._run_phase(tmp_path, budget, 0, run, strategies=["naive", "lwf"], opts={"lwf": {"alpha": "1.0"}})["wall_s"] == 12.0
    assert not calls
    assert bench._run_phase(tmp_path, {**budget, "epochs": 7}, 0, run) == {"fresh": True}  # other budget
    assert bench._run_phase(tmp_path, budget, 1, run) == {"fresh": True}  # other seed
    assert bench._run_phase(tmp_path, budget, 0, run, strategies=["lwf"]) == {"fresh": True}  # other strategies
    assert bench._run_phase(tmp_path, budget, 0, run, opts={"lwf": {"alpha": "4"}}) == {"fresh": True}  # other setting
    assert bench._run_phase(tmp_path / "missing", budget, 0, run) == {"fresh": True}
    assert len(calls) == 5
