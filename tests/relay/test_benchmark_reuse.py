"""``simulate(reuse=...)`` takes over finished runs only when strategy, settings, order, budget, seed and initial
weights all match, and trains the rest (what lets the 2 h fundus benchmark rerun only what changed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medzoo.relay.baton import Baton
from medzoo.relay.simulate import simulate
from medzoo.relay.takeover import baton_matches as _baton_matches


def test_simulate_reuses_only_matching_runs(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None)
    first = simulate(toy.spec.name, ["a", "b"], tmp_path / "one", strategies=["naive", "lwf"],
                     baselines=["single", "pooled"], **kw)
    prior = tmp_path / "one" / "relay_results.json"
    assert first["reused"] == {"runs": [], "baselines": {}, "wall_s": 0.0}

    # same everything, LwF with another setting: naive and the baselines are taken over, LwF is trained again
    second = simulate(toy.spec.name, ["a", "b"], tmp_path / "two", strategies=["naive", "lwf"],
                      baselines=["single", "pooled"], strategy_opts={"lwf": {"alpha": 3.0}}, reuse=[prior], **kw)
    assert second["reused"]["runs"] == ["naive:a-b"] and second["reused"]["baselines"] == {"single": str(prior), "pooled": str(prior)}
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
    # per-image normalisation statistics (same initial tensors, another network at inference): nothing is reused,
    # and every method's network, batons included, has them
    fifth = simulate(toy.spec.name, ["a", "b"], tmp_path / "five", strategies=["naive"], baselines=["pooled"],
                     reuse=[prior], norm_eval="image", **kw)
    assert fifth["reused"] == {"runs": [], "baselines": {}, "wall_s": 0.0} and fifth["norm_eval"] == "image"
    assert fifth["init_sha256"] == first["init_sha256"]
    assert Baton.read(fifth["runs"][0]["baton"]).architecture["norm_eval"] == "image"
    assert "each image's own" in (tmp_path / "five" / "relay_report.md").read_text()  # the report says so
    assert "each image's own" not in (Path(prior).parent / "relay_report.md").read_text()


def test_reuse_treats_settings_an_older_file_lacks_as_defaults(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None, strategies=["lwf"], baselines="none")
    simulate(toy.spec.name, ["a", "b"], tmp_path / "one", **kw)
    prior = tmp_path / "one" / "relay_results.json"
    old = json.loads(prior.read_text())
    del old["init_sha256"]  # written before medzoo recorded it: the init.safetensors beside it stands in
    del old["norm_eval"]  # likewise: running statistics, the only mode then
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


def test_reuse_gathers_baselines_from_several_files(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The parts of a parallel run (one file per baseline) combine; a baseline no file holds is trained."""
    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None, strategies=[])
    simulate(toy.spec.name, ["a", "b"], tmp_path / "p1", baselines=["pooled"], **kw)
    simulate(toy.spec.name, ["a", "b"], tmp_path / "p2", baselines=["single"], **kw)
    parts = [tmp_path / "p1" / "relay_results.json", tmp_path / "p2" / "relay_results.json"]
    both = json.loads(parts[0].read_text())["baselines"] | json.loads(parts[1].read_text())["baselines"]
    res = simulate(toy.spec.name, ["a", "b"], tmp_path / "all", baselines=["single", "pooled", "fedavg"], reuse=parts, **kw)
    assert res["reused"]["baselines"] == {"pooled": str(parts[0]), "single": str(parts[1])}
    assert list(res["baselines"]) == ["single:a", "single:b", "pooled", "fedavg"]  # the usual order
    assert all(res["baselines"][k] == v for k, v in both.items())
    # a file holding the single-site model of only some sites does not count for "single"
    part = json.loads(parts[1].read_text())
    del part["baselines"]["single:b"]
    parts[1].write_text(json.dumps(part))
    res = simulate(toy.spec.name, ["a", "b"], tmp_path / "again", baselines=["single"], reuse=parts, **kw)
    assert res["reused"]["baselines"] == {} and set(res["baselines"]) == {"single:a", "single:b"}


def test_simulate_on_other_splits_never_touches_train_or_test(toy, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Choosing settings on a validation split: training reads only ``fit``, measuring only ``val`` (relays and
    baselines alike), the splits are recorded, and results on other splits are never taken over."""
    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None, strategies=["lwf"], baselines=["single", "pooled"])
    default = simulate(toy.spec.name, ["a", "b"], tmp_path / "default", **kw)
    asked: list[str] = []
    build = type(toy).build_dataset

    def spy(self, source, split, **k):  # type: ignore[no-untyped-def]
        asked.append(split)
        return build(self, source, split, **k)

    monkeypatch.setattr(type(toy), "build_dataset", spy)
    res = simulate(toy.spec.name, ["a", "b"], tmp_path / "val", train_split="fit", test_split="val",
                   reuse=[tmp_path / "default" / "relay_results.json"], **kw)
    assert set(asked) == {"fit", "val"}
    assert res["reused"] == {"runs": [], "baselines": {}, "wall_s": 0.0}  # the default-split results are not reused
    assert (res["train_split"], res["test_split"]) == ("fit", "val") and default["train_split"] == "train"
    ledger = Baton.read(res["runs"][0]["baton"]).ledger
    assert [e["train_config"]["split"] for e in ledger if e.get("kind") == "train"] == ["fit", "fit"]
    assert "measured on split `val`" in (tmp_path / "val" / "relay_report.md").read_text()
    assert "measured on split" not in (tmp_path / "default" / "relay_report.md").read_text()


def test_lap_epochs_set_each_laps_training_and_keep_the_baselines(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``lap_epochs``: each position of the order trains its own number of epochs (recorded in the ledger and the
    budget); baselines, which do not use it, are taken over from a result that differs only there, also from a
    published benchmark file (results under ``results``); the relay itself never is."""
    from medzoo.errors import InputError
    from medzoo.relay.simulate import Budget

    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None, strategies=["naive"], baselines=["pooled"])
    first = simulate(toy.spec.name, ["a", "b"], tmp_path / "one", **kw)
    published = tmp_path / "published.json"
    published.write_text(json.dumps({"benchmark": "x", "results": json.loads((tmp_path / "one" / "relay_results.json").read_text())}))
    res = simulate(toy.spec.name, ["a", "b"], tmp_path / "two", reuse=[published], lap_epochs=[2, 1], **kw)
    assert res["budget"]["lap_epochs"] == [2, 1] and res["budget"]["epochs"] == 1
    ledger = Baton.read(res["runs"][0]["baton"]).ledger
    assert [e["epochs"] for e in ledger if e.get("kind") == "train"] == [2, 1]
    assert res["reused"]["runs"] == [] and res["reused"]["baselines"] == {"pooled": str(published)}
    assert res["baselines"]["pooled"] == first["baselines"]["pooled"]
    again = simulate(toy.spec.name, ["a", "b"], tmp_path / "three", reuse=[tmp_path / "two" / "relay_results.json"],
                     lap_epochs=[2, 1], **kw)
    assert again["reused"]["runs"] == ["naive:a-b"]  # the same schedule is taken over
    other = simulate(toy.spec.name, ["a", "b"], tmp_path / "four", reuse=[tmp_path / "two" / "relay_results.json"],
                     lap_epochs=[1, 2], **kw)
    assert other["reused"]["runs"] == []  # another schedule is not
    with pytest.raises(InputError, match="2 laps for 3 sites"):
        simulate(toy.spec.name, ["a", "b", "c"], tmp_path / "five", lap_epochs=[2, 1], **kw)
    with pytest.raises(InputError, match="positive"):
        Budget(epochs=1, max_train=1, max_test=1, cycles=1, rounds=1, gen_epochs=1, n_boot=1, lap_epochs=(2, 0))


def test_augment_level_reaches_every_training_set_and_is_part_of_the_identity(toy, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``Budget.augment``: a level the task lacks is refused before any training; a level it has reaches the
    training datasets of relays and baselines alike (test data stays unaugmented), is recorded, and results with
    another level are never taken over (a file written before the field counts as ``standard``)."""
    from medzoo.errors import InputError

    kw = dict(budget="tiny", epochs=1, n_boot=20, log=lambda s: None, strategies=["naive"], baselines=["pooled"])
    with pytest.raises(InputError, match="no augmentation level 'strong'"):
        simulate(toy.spec.name, ["a", "b"], tmp_path / "refused", augment="strong", **kw)
    assert not (tmp_path / "refused" / "relay_results.json").exists()
    default = simulate(toy.spec.name, ["a", "b"], tmp_path / "default", **kw)
    prior = tmp_path / "default" / "relay_results.json"
    old = json.loads(prior.read_text())
    assert old["budget"]["augment"] == "standard"
    del old["budget"]["augment"]  # written before the field existed
    prior.write_text(json.dumps(old))
    again = simulate(toy.spec.name, ["a", "b"], tmp_path / "again", reuse=[prior], **kw)
    assert again["reused"]["runs"] == ["naive:a-b"] and again["reused"]["baselines"] == {"pooled": str(prior)}

    asked: list[tuple[str, object]] = []
    build = type(toy).build_dataset

    def spy(self, source, split, augment=False, **k):  # type: ignore[no-untyped-def]
        asked.append((split, augment))
        return build(self, source, split, augment=bool(augment), **k)

    monkeypatch.setattr(type(toy), "build_dataset", spy)
    monkeypatch.setattr(type(toy), "augment_levels", ("standard", "strong"), raising=False)
    strong = simulate(toy.spec.name, ["a", "b"], tmp_path / "strong", reuse=[prior], augment="strong", **kw)
    assert set(asked) == {("train", "strong"), ("test", False)}
    assert strong["budget"]["augment"] == "strong"
    ledger = Baton.read(strong["runs"][0]["baton"]).ledger
    assert [e["train_config"]["augment"] for e in ledger if e.get("kind") == "train"] == ["strong", "strong"]
    assert strong["reused"] == {"runs": [], "baselines": {}, "wall_s": 0.0}
    assert default["budget"]["augment"] == "standard"
