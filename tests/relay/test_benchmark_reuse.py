"""``simulate(reuse=...)`` takes over finished runs only when strategy, settings, order, budget, seed and initial
weights all match, and trains the rest (what lets the 2 h fundus benchmark rerun only what changed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medzoo.relay.baton import Baton
from medzoo.relay.simulate import _baton_matches, simulate


def test_simulate_reuses_only_matching_runs(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None)
    first = simulate(toy.spec.name, ["a", "b"], tmp_path / "one", strategies=["naive", "lwf"],
                     baselines=["single", "pooled"], **kw)
    prior = tmp_path / "one" / "relay_results.json"
    assert first["reused"] == {"runs": [], "baselines": None, "wall_s": 0.0}

    # same everything, LwF with another setting: naive and the baselines are taken over, LwF is trained again
    second = simulate(toy.spec.name, ["a", "b"], tmp_path / "two", strategies=["naive", "lwf"],
                      baselines=["single", "pooled"], strategy_opts={"lwf": {"alpha": 3.0}}, reuse=[prior], **kw)
    assert second["reused"]["runs"] == ["naive:a-b"] and second["reused"]["baselines"] == str(prior)
    by = {r["strategy"]: r for r in second["runs"]}
    assert by["naive"]["R"] == first["runs"][0]["R"] and by["naive"]["reused_from"] == str(prior)
    assert by["naive"]["baton"] == first["runs"][0]["baton"]  # still that run's baton
    # a record whose baton path now holds another run's baton (other settings) or nothing is not that run's baton
    lwf_run = next(r for r in first["runs"] if r["strategy"] == "lwf")
    assert _baton_matches(lwf_run)
    assert not _baton_matches({**lwf_run, "settings": {"alpha": 3.0}})
    assert not _baton_matches({**lwf_run, "baton": str(tmp_path / "missing.baton")})
    assert "reused_from" not in by["lwf"] and by["lwf"]["settings"]["alpha"] == 3.0
    assert second["baselines"] == first["baselines"]
    # reused runs keep counting in the wall time, with the time recorded when they ran
    recorded = by["naive"]["wall_s"] + sum(v["wall_s"] for v in second["baselines"].values())
    assert second["reused"]["wall_s"] == pytest.approx(recorded)
    assert second["wall_s"] >= second["reused"]["wall_s"]

    # another seed (so other initial weights and subsets) or another budget: nothing is reused
    third = simulate(toy.spec.name, ["a", "b"], tmp_path / "three", strategies=["naive"], baselines="none",
                     seed=1, reuse=[prior], **kw)
    assert third["reused"]["runs"] == []
    fourth = simulate(toy.spec.name, ["a", "b"], tmp_path / "four", strategies=["naive"], baselines="none",
                      reuse=[prior], **{**kw, "epochs": 2})
    assert fourth["reused"]["runs"] == []


def test_reuse_treats_settings_an_older_file_lacks_as_defaults(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None, strategies=["lwf"], baselines="none")
    simulate(toy.spec.name, ["a", "b"], tmp_path / "one", **kw)
    prior = tmp_path / "one" / "relay_results.json"
    old = json.loads(prior.read_text())
    del old["init_sha256"]  # written before medzoo recorded it: the init.safetensors beside it stands in
    for r in old["runs"]:
        r["settings"].pop("site_lr_decay")  # a setting added later, whose default is the old behaviour
    prior.write_text(json.dumps(old))
    again = simulate(toy.spec.name, ["a", "b"], tmp_path / "two", reuse=[prior], **kw)
    assert again["reused"]["runs"] == ["lwf:a-b"]
    other = simulate(toy.spec.name, ["a", "b"], tmp_path / "three", reuse=[prior],
                     strategy_opts={"lwf": {"site_lr_decay": 0.5}}, **kw)
    assert other["reused"]["runs"] == []
    ledger = Baton.read(other["runs"][0]["baton"]).ledger
    assert [e["train_config"]["lr_scale"] for e in ledger if e.get("kind") == "train"] == [1.0, 0.5]
