"""Parallel simulation (``simulate(jobs=N)``): the parts run as separate processes and give the same results as one
process; an interrupted call keeps its finished parts; a failing part names its log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medzoo.relay.parallel import run_parts
from medzoo.relay.simulate import simulate

KW = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None)


def test_parallel_parts_give_the_same_results_as_one_process(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = (toy.spec.name, ["a", "b"])
    what = dict(strategies=["naive", "lwf"], baselines=["single", "ensemble", "pooled"])
    one = simulate(*args, tmp_path / "one", **what, **KW)  # type: ignore[arg-type]
    par = simulate(*args, tmp_path / "par", jobs=3, **what, **KW)  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "par" / "parts").iterdir()) == \
        ["baseline-pooled", "baseline-single+ensemble", "lwf-a-b", "naive-a-b"]
    assert par["parallel"]["jobs"] == 3 and par["parallel"]["parts_run"] == 4
    assert par["parallel"]["sum_of_part_run_times_s"] > 0
    assert par["reused"] == {"runs": [], "baselines": {}, "wall_s": 0.0}  # trained by this call, not reused
    by_one = {r["strategy"]: r for r in one["runs"]}
    for r in par["runs"]:
        assert r["R"] == by_one[r["strategy"]]["R"] and r["part"].endswith(f"{r['strategy']}-a-b")  # same seed, same threads
        assert r["per_sample"] == by_one[r["strategy"]]["per_sample"]
    assert list(par["baselines"]) == list(one["baselines"])
    assert all(par["baselines"][k]["row"] == v["row"] for k, v in one["baselines"].items())
    saved = json.loads((tmp_path / "par" / "relay_results.json").read_text())
    assert saved["parallel"]["parts_run"] == 4

    # called again (e.g. after an interruption), finished parts are kept: nothing runs, all counts as reused
    again = simulate(*args, tmp_path / "par", jobs=3, **what, **KW)  # type: ignore[arg-type]
    assert again["parallel"]["parts_run"] == 0 and len(again["reused"]["runs"]) == 2
    assert set(again["reused"]["baselines"]) == {"single", "ensemble", "pooled"}

    # a part killed during its second lap (no results, no second baton): the rerun takes its first lap over
    part = tmp_path / "par" / "parts" / "lwf-a-b"
    (part / "relay_results.json").unlink()
    (part / "batons" / "lwf" / "a-b" / "2-b.baton").unlink()
    third = simulate(*args, tmp_path / "par", jobs=3, **what, **KW)  # type: ignore[arg-type]
    assert third["parallel"]["parts_run"] == 1 and "lap 1 (a): taken over" in (part / "part.log").read_text()
    assert next(r for r in third["runs"] if r["strategy"] == "lwf")["R"] == by_one["lwf"]["R"]


def test_a_failing_part_stops_the_run_and_names_its_log(tmp_path: Path) -> None:
    part = {"label": "bad", "dir": str(tmp_path / "bad"), "kwargs": {"task_name": "no-such-task", "sites": ["a"],
                                                                        "budget": {}}}
    with pytest.raises(RuntimeError, match=r"part bad failed .*part.log"):
        run_parts([part], 2, log=lambda s: None)
    assert "Error" in (tmp_path / "bad" / "part.log").read_text()

