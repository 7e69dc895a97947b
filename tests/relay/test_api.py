"""Deployment API and CLI: a relay step by step, evaluation laps, export, finetune, and kill/resume determinism."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from medzoo.core import load_model
from medzoo.relay import api
from medzoo.relay.baton import Baton


@pytest.mark.parametrize("strategy,opts", [("lwf", {}), ("lwf", {"distill_inputs": "perturbed"}),
                                           ("relay", {"gen_epochs": 1, "gen_size": 16})])
def test_killed_and_resumed_ends_with_same_weights(toy, tmp_path: Path, strategy: str, opts: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    b0 = api.start(toy.spec.name, tmp_path / "0.baton", strategy=strategy, **opts)
    b1 = api.train(b0, "a", "a", tmp_path / "1.baton", epochs=2, lr=0.01, progress=False)
    kw = dict(epochs=4, lr=0.01, seed=3, progress=False)
    full = api.train(b1, "b", "b", tmp_path / "full.baton", **kw)  # type: ignore[arg-type]
    out = tmp_path / "resumed.baton"
    assert api.train(b1, "b", "b", out, _stop_after_epochs=2, **kw) is None  # type: ignore[arg-type]  # "killed"
    work = tmp_path / ".resumed.baton.work"
    assert (work / "checkpoint.pt").is_file() and not out.exists()
    api.train(b1, "b", "b", out, **kw)  # type: ignore[arg-type]
    a, b = Baton.read(full), Baton.read(out)  # type: ignore[arg-type]
    assert b.ledger[-1]["train_config"]["resumed_from_epoch"] == 2
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert all(torch.equal(a.strategy_state[k], b.strategy_state[k]) for k in a.strategy_state)
    assert a.weights_sha256 == b.weights_sha256 and not work.exists()
    # and a run that differs (other seed) really gives other weights: the check can fail
    other = Baton.read(api.train(b1, "b", "b", tmp_path / "other.baton", epochs=4, lr=0.01, seed=4, progress=False))  # type: ignore[arg-type]
    assert other.weights_sha256 != a.weights_sha256


def test_resumed_recipe_lap_records_every_merge(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Killed after 3 of 4 epochs (one merge done), the resumed lap once recorded only the merge after epoch 4."""
    b0 = api.start(toy.spec.name, tmp_path / "0.baton", strategy="relay", replay=False)
    b1 = api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, lr=0.01, progress=False)
    kw = dict(epochs=4, lr=0.01, seed=3, progress=False)
    full = Baton.read(api.train(b1, "b", "b", tmp_path / "full.baton", **kw))  # type: ignore[arg-type]
    assert api.train(b1, "b", "b", tmp_path / "r.baton", _stop_after_epochs=3, **kw) is None  # type: ignore[arg-type]
    resumed = Baton.read(api.train(b1, "b", "b", tmp_path / "r.baton", **kw))  # type: ignore[arg-type]
    assert resumed.ledger[-1]["train_config"]["resumed_from_epoch"] == 3
    assert resumed.ledger[-1]["train_config"]["processes"] == 1  # torchrun would record its world size
    assert full.ledger[-1]["note"]["merge"]["after_epochs"] == [3, 4] == resumed.ledger[-1]["note"]["merge"]["after_epochs"]


def test_start_seeds_the_random_initialisation(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two runs of one recipe in separate processes must start from the same weights: the global torch generator
    is left in a different state before each start here, as it would be by whatever ran earlier."""
    states = []
    for i, seed in enumerate([0, 0, 1]):
        torch.manual_seed(1000 + i)
        torch.rand(7)
        states.append(Baton.read(api.start(toy.spec.name, tmp_path / f"{i}.baton", strategy="naive", seed=seed)).weights_sha256)
    assert states[0] == states[1] != states[2]


def test_relay_steps_evaluate_export(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b0 = api.start(toy.spec.name, tmp_path / "0.baton", strategy="naive")
    b1 = api.train(b0, "a", "a", tmp_path / "1.baton", epochs=3, lr=0.02, progress=False)
    b2 = api.train(b1, "b", "b", tmp_path / "2.baton", epochs=3, lr=0.02, progress=False)  # type: ignore[arg-type]
    before = b2.read_bytes()  # type: ignore[union-attr]
    res = api.evaluate(b2, "a", "a")  # type: ignore[arg-type]
    info = api.inspect(b2)  # type: ignore[arg-type]
    assert info["sites"] == ["a", "b"] and info["ledger"][-1]["kind"] == "evaluate"
    assert info["ledger"][-1]["after_sites"] == ["a", "b"]
    assert info["ledger"][-1]["metrics"]["a"]["accuracy"] == pytest.approx(res.metrics["accuracy"])
    assert len(res.per_sample["accuracy"]) == 12
    assert b2.read_bytes() != before  # type: ignore[union-attr]
    assert api.verify(b2)["entries"] == 4  # type: ignore[arg-type]
    tm = load_model(api.export(b2, tmp_path / "m.safetensors"), expect_task=toy.spec.name)  # type: ignore[arg-type]
    assert tm.meta["sites"] == ["a", "b"]
    again = toy.evaluate(tm.net, toy.build_dataset("a", "test"))
    assert again.metrics["accuracy"] == pytest.approx(res.metrics["accuracy"])


def test_finetune_one_call(toy) -> None:  # type: ignore[no-untyped-def]
    net = toy.build_model()
    tm = toy.wrap(net, {"n_train": 24})
    w0 = {k: v.clone() for k, v in net.state_dict().items()}
    for strategy in ("lwf", "ewc", "relay"):
        out = api.finetune(tm, "b", site="b", strategy=strategy, epochs=1, batch_size=8, lr=0.01, seed=0, device="cpu",
                           progress=False)
        assert out.meta["finetuned"][-1]["site"] == "b" and out.meta["n_train"] == 48
        assert any(not torch.equal(w0[k], v) for k, v in out.net.state_dict().items())
    assert all(torch.equal(w0[k], v) for k, v in net.state_dict().items())  # the input model is untouched
    # the Fisher-weighted merge: the arriving model's Fisher is estimated on the new data (no carried Fisher)
    fis = api.finetune(tm, "b", site="b", strategy="relay", merge_weights="fisher", epochs=1, batch_size=8, lr=0.01,
                       seed=0, device="cpu", progress=False)
    sam = api.finetune(tm, "b", site="b", strategy="relay", epochs=1, batch_size=8, lr=0.01, seed=0, device="cpu",
                       progress=False)
    assert any(not torch.equal(fis.net.state_dict()[k], v) for k, v in sam.net.state_dict().items())


def test_cli_relay_round(toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from medzoo.cli.main import main

    b0, b1 = tmp_path / "0.baton", tmp_path / "1.baton"
    assert main(["relay", "start", "--task", toy.spec.name, "--out", str(b0), "--strategy", "ewc", "--opt", "lam=10"]) == 0
    assert main(["relay", "train", str(b0), "--data", "a", "--site", "a", "--out", str(b1), "--epochs", "1", "--quiet"]) == 0
    trained = capsys.readouterr().out  # the site's held-out result, one metric a line as `relay evaluate` shows it
    assert "trained on 24 samples, 1 epoch (SYNTHETIC data)\nmeasured at a [test]:\n  accuracy " in trained
    assert main(["relay", "evaluate", str(b1), "--data", "b", "--site", "b"]) == 0
    assert main(["relay", "inspect", str(b1)]) == 0
    assert main(["relay", "verify", str(b1)]) == 0
    assert main(["relay", "export", str(b1), "--out", str(tmp_path / "m.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "evaluate b" in text and "OK:" in text and "ewc" in text
    # a baton handed to a command that takes a model file says how to get one from it
    assert main(["evaluate", str(b1), "--data", "b"]) == 2
    assert f"it is a relay baton: export its model first (`medzoo relay export {b1}" in capsys.readouterr().err
    assert main(["relay", "start", "--task", toy.spec.name, "--out", str(tmp_path / "x"), "--strategy", "ewc",
                 "--opt", "mode=weird"]) == 2
    assert main(["relay", "train", str(tmp_path / "m.safetensors"), "--data", "a", "--site", "a", "--out", str(tmp_path / "y")]) == 2
    assert "not a medzoo relay baton" in capsys.readouterr().err
    assert main(["relay", "start", "--task", toy.spec.name, "--out", str(tmp_path / "i.baton"), "--strategy", "lwf",
                 "--norm-eval", "image"]) == 0
    assert api.inspect(tmp_path / "i.baton")["architecture"]["norm_eval"] == "image"
    # the training augmentation is recorded; a level the task does not have is refused before anything is written
    assert [e["train_config"]["augment"] for e in api.inspect(b1)["ledger"] if e.get("kind") == "train"] == ["standard"]
    assert main(["relay", "train", str(b0), "--data", "a", "--site", "a", "--out", str(tmp_path / "s.baton"),
                 "--augment", "strong", "--quiet"]) == 2
    assert "has no augmentation level 'strong'" in capsys.readouterr().err and not (tmp_path / "s.baton").exists()


def test_default_strategy_is_the_measured_best(toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """A relay started without --strategy once ran the Relay Learning recipe, the relay strategy that ended lowest on
    the real fundus relay (docs/relay.md); it is LwF now, as for `finetune`, and `relay strategies` says so."""
    from medzoo.cli.main import main
    from medzoo.relay import DEFAULT_STRATEGY

    assert DEFAULT_STRATEGY == "lwf"
    assert main(["relay", "start", "--task", toy.spec.name, "--out", str(tmp_path / "c.baton")]) == 0
    assert api.inspect(tmp_path / "c.baton")["strategy"] == "lwf"
    assert api.inspect(api.start(toy.spec.name, tmp_path / "p.baton"))["strategy"] == "lwf"
    capsys.readouterr()
    assert main(["relay", "strategies"]) == 0
    marked = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.endswith("[the default]")]
    assert marked == ["lwf"]
    assert main(["relay", "simulate", "--task", toy.spec.name, "--sites", "a,b", "--baselines", "none", "--epochs", "1",
                 "--out", str(tmp_path / "sim")]) == 0
    assert "SYNTHETIC lwf [a -> b]" in capsys.readouterr().out


def test_cli_simulate_and_strategies(toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from medzoo.cli.main import main

    assert main(["relay", "strategies"]) == 0
    listing = capsys.readouterr().out
    assert "merge = second-half" in listing and "(second-half | end | off)" in listing
    assert re.search(r"alpha = 1\.0 +\(number >= 0\)", listing) and "carry_optimizer = false" in listing
    args = ["relay", "simulate", "--task", toy.spec.name, "--sites", "a,b", "--strategy", "ewc", "--baselines", "none",
            "--epochs", "1", "--out", str(tmp_path / "sim")]
    assert main([*args, "--opt", "ewc.lam=10", "--opt", "ewc.max_batches=1"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC ewc [a -> b]" in out and (tmp_path / "sim" / "relay_report.md").is_file()
    assert main([*args, "--opt", "ewc.nonsense=1"]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert main([*args, "--augment", "strong"]) == 2  # the toy task has only its standard augmentation
    assert "has no augmentation level 'strong'" in capsys.readouterr().err


def test_finetuned_model_describes_itself_not_the_pretrained_file(toy, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A fine-tuned copy once kept the shipped card's name, file checksum and metrics, and the default count of
    earlier samples ignored a card's ``extra.relay.n_samples`` (so a 16-case site weighed as much as 1920 slices)."""
    card = {"name": "toy-base", "file": "toy-base.safetensors", "sha256": "ab" * 32, "metrics": {"a test": {"accuracy": 0.9}},
            "summary": "the base", "sites": ["a"], "training_data": "site a", "recipe": "python make.py",
            "extra": {"threshold": 0.4, "relay": {"n_samples": 1920}}, "synthetic": True}
    out = api.finetune(toy.wrap(toy.build_model(), card), "b", site="b", epochs=1, batch_size=8, lr=0.01, seed=0,
                       device="cpu", progress=False)
    m = out.meta
    assert m["name"] == "toy-base+b" and m["sites"] == ["a", "b"] and m["metrics"] == {}
    assert "sha256" not in m and "file" not in m and "recipe" not in m
    assert m["finetuned_from"]["sha256"] == "ab" * 32 and m["finetuned_from"]["metrics"] == card["metrics"]
    assert m["extra"]["threshold"] == 0.4  # inference settings travel on
    assert m["summary"].startswith("SYNTHETIC toy-base fine-tuned at site b") and "Not evaluated" in m["summary"]
    n_b = m["finetuned"][-1]["n_samples"]
    assert m["finetuned"][-1]["n_prev"] == 1920 and m["n_train"] == 1920 + n_b
    assert "n_prev_assumed" not in m["finetuned"][-1]
    # a model whose metadata give no count: the new site's size, and the entry says it was assumed
    bare = api.finetune(toy.wrap(toy.build_model(), {}), "b", epochs=1, batch_size=8, seed=0, device="cpu", progress=False)
    assert bare.meta["finetuned"][-1]["n_prev_assumed"] is True and bare.meta["n_train"] == 2 * n_b
    again = api.finetune(out, "c", site="c", epochs=1, batch_size=8, seed=0, device="cpu", progress=False)
    assert again.meta["name"] == "toy-base+b+c" and again.meta["finetuned_from"]["name"] == "toy-base+b"
    assert [s["site"] for s in again.meta["finetuned"]] == ["b", "c"]
    # the command says what it did and that the result is not measured yet (it printed only the path)
    from medzoo.cli.main import main

    base = toy.wrap(toy.build_model(), card).save(tmp_path / "base.safetensors")
    capsys.readouterr()
    assert main(["finetune", str(base), "--data", "b", "--site", "b", "--epochs", "1", "--out", str(tmp_path / "ft.safetensors")]) == 0
    assert (f"wrote {tmp_path / 'ft.safetensors'}: SYNTHETIC toy-base fine-tuned at site b with lwf (1 epoch). "
            "Not evaluated by medzoo") in capsys.readouterr().out


def test_a_baton_written_before_a_setting_range_was_checked_still_loads(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from medzoo.relay.baton import Baton
    from medzoo.relay.strategies import StrategyError, make_strategy, strategy_defaults
    from medzoo.relay.takeover import start_matches

    net = toy.build_model()
    old_settings = {**strategy_defaults("ewc"), "gamma": 1.5}  # accepted before ranges were checked
    del old_settings["site_warmup"], old_settings["carry_optimizer"]  # keys an older medzoo did not write
    Baton.new(toy.spec.name, toy.architecture(net), "ewc", old_settings, net.state_dict()).write(tmp_path / "old.baton")
    with pytest.raises(StrategyError, match="gamma"):
        make_strategy("ewc", gamma=1.5)  # a new relay is refused ...
    api.export(tmp_path / "old.baton", tmp_path / "m.safetensors")  # ... an existing baton still exports and evaluates
    assert load_model(tmp_path / "m.safetensors").task.spec.name == toy.spec.name
    api.evaluate(tmp_path / "old.baton", "a", site="a", out=tmp_path / "evaluated.baton")

    # simulate takes over a start baton whose settings lack keys added since, when they would be the defaults
    from medzoo.relay.trainer import state_fingerprint

    current = {**strategy_defaults("lwf")}
    older = {k: v for k, v in current.items() if k not in ("site_warmup", "carry_optimizer")}
    Baton.new(toy.spec.name, toy.architecture(net), "lwf", older, net.state_dict()).write(tmp_path / "0-start.baton")
    assert start_matches(tmp_path / "0-start.baton", toy, net, state_fingerprint(net), "lwf", current)
    assert not start_matches(tmp_path / "0-start.baton", toy, net, state_fingerprint(net), "lwf",
                             {**current, "carry_optimizer": True})
