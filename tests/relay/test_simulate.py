"""Simulation metrics against hand-computed values, baselines' building blocks, and a tiny simulation run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch
from torch import nn

from medzoo.relay import metrics
from medzoo.relay.baselines import LogitEnsemble, fedavg_merge
from medzoo.relay.simulate import simulate

R = [[0.80, 0.10, 0.20],
     [0.60, 0.70, 0.30],
     [0.50, 0.65, 0.90]]


def test_metrics_by_hand() -> None:
    assert metrics.final_average(R) == pytest.approx((0.50 + 0.65 + 0.90) / 3)
    # BWT = mean(R[2][0] - R[0][0], R[2][1] - R[1][1]) = mean(-0.30, -0.05)
    assert metrics.backward_transfer(R) == pytest.approx(-0.175)
    # forgetting = mean(max(0.8, 0.6) - 0.5, max(0.1, 0.7) - 0.65) = mean(0.30, 0.05)
    assert metrics.forgetting(R) == pytest.approx(0.175)
    # FWT = mean(R[0][1] - b1, R[1][2] - b2) = mean(0.10 - 0.05, 0.30 - 0.10)
    assert metrics.forward_transfer(R, [0.0, 0.05, 0.10]) == pytest.approx(0.125)
    # a lower-is-better metric flips the sign: rising error = forgetting = negative BWT
    err = [[1.0, 9.0], [3.0, 2.0]]
    assert metrics.backward_transfer(err, higher_is_better=False) == pytest.approx(-2.0)
    assert metrics.forgetting(err, higher_is_better=False) == pytest.approx(2.0)
    assert metrics.forgetting([[0.5, 0.1], [0.9, 0.8]]) == pytest.approx(-0.4)  # improvement = negative forgetting
    with pytest.raises(ValueError):
        metrics.final_average([[1.0, 2.0]])


def test_bootstrap_ci_brackets_the_estimate() -> None:
    final = [[1, 0, 1, 1], [0, 1, 1, 1, 1]]
    diag = [[1, 1, 1, 1], [0, 1, 1, 1, 1]]
    ci = metrics.bootstrap_ci(final, diag, n_boot=500)
    est = (0.75 + 0.8) / 2
    assert ci["final_avg"][0] <= est <= ci["final_avg"][1]
    assert ci["bwt"][0] <= -0.25 <= ci["bwt"][1] <= 0.0
    assert metrics.bootstrap_ci([[0.5, 0.5]], n_boot=50)["final_avg"] == [0.5, 0.5]


def test_logit_ensemble_and_fedavg_merge() -> None:
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    x = torch.randn(5, 2)
    assert torch.allclose(LogitEnsemble([a, b])(x), (a(x) + b(x)) / 2)

    class Two(nn.Module):
        def __init__(self, lin: nn.Module) -> None:
            super().__init__()
            self.lin = lin

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.lin(x), "aux": self.lin(x) * 2}

    out = LogitEnsemble([Two(a), Two(b)])(x)
    assert torch.allclose(out["aux"], a(x) + b(x))
    m = fedavg_merge([a.state_dict(), b.state_dict()], [1, 3])
    assert torch.allclose(m["weight"], 0.25 * a.weight + 0.75 * b.weight)


def test_simulate_toy(toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    res = simulate(toy.spec.name, ["a", "b"], tmp_path, strategies=["naive", "lwf"], orders="all", external=["d"],
                   budget="tiny", baselines=["single", "ensemble", "pooled", "fedavg"], epochs=1, n_boot=50)
    assert len(res["runs"]) == 4  # 2 strategies x 2 orders
    for r in res["runs"]:
        assert len(r["R"]) == 2 and all(len(row) == 2 for row in r["R"])
        assert r["bwt"] == pytest.approx(r["R"][1][0] - r["R"][0][0])
        assert r["final_avg"] == pytest.approx(sum(r["R"][1]) / 2)
        assert set(r["external"]) == {"d"} and r["ci"]["final_avg"][0] <= r["final_avg"] <= r["ci"]["final_avg"][1]
        assert len(r["per_sample"]["final"][0]) == 8  # tiny budget: 8 test images per site
    assert set(res["baselines"]) == {"single:a", "single:b", "ensemble", "pooled", "fedavg"}
    assert set(res["order_study"]) == {"naive", "lwf"} and res["order_study"]["naive"]["n_orders"] == 2
    saved = json.loads((tmp_path / "relay_results.json").read_text())
    assert saved["synthetic"] is True and saved["runs"][0]["R"] == res["runs"][0]["R"]
    md = (tmp_path / "relay_report.md").read_text()
    assert md.startswith("# SYNTHETIC Relay simulation") and "BWT" in md and "Lopez-Paz" in md
    img = cv2.imread(str(tmp_path / "R_lwf.png"))
    assert img is not None and img.shape[0] > 100
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "after a" in printed
    assert "[95% CI]" in md and "No confidence intervals" not in md
    # a whole-set metric (no per-sample values, e.g. macro AUROC) has no CI: the report says so, no empty CI column
    from medzoo.relay import report

    bare = {**saved, "runs": [{**r, "ci": {}} for r in saved["runs"]],
            "baselines": {k: {**v, "ci": {}} for k, v in saved["baselines"].items()}}
    md2 = report.markdown(bare)
    assert "No confidence intervals" in md2 and "[95% CI]" not in md2


def test_simulate_refuses_unknown_baselines(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # ["all"] is what a comma-split "--baselines all" gives: it once trained no baseline at all, silently
    from medzoo.errors import InputError

    with pytest.raises(InputError, match=r"unknown baseline\(s\) \['all'\].*single, ensemble, pooled"):
        simulate(toy.spec.name, ["a", "b"], tmp_path / "run", strategies=["naive"], baselines=["all"], budget="tiny")
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_simulate_refuses_orders_that_are_not_orderings_of_the_sites(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # a repeated site once ran and reported BWT over its duplicated columns as if they were separate sites
    from medzoo.errors import InputError

    kw = dict(strategies=["naive"], baselines="none", budget="tiny")
    with pytest.raises(InputError, match=r"order \['a', 'b', 'a', 'b'\] is not an ordering of the sites \['a', 'b'\]"):
        simulate(toy.spec.name, ["a", "b"], tmp_path / "run", orders=[["a", "b", "a", "b"]], **kw)
    with pytest.raises(InputError, match=r"order \['a', 'c'\] is not an ordering"):
        simulate(toy.spec.name, ["a", "b"], tmp_path / "run", orders=[["a", "c"]], **kw)
    with pytest.raises(InputError, match="more than once"):
        simulate(toy.spec.name, ["a", "a"], tmp_path / "run", **kw)
    # an "external" site that is also trained on once ran and was reported as a site never trained on
    with pytest.raises(InputError, match=r"\['a'\] also in --sites"):
        simulate(toy.spec.name, ["a", "b"], tmp_path / "run", external=["a"], **kw)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_simulate_takes_over_the_laps_an_interrupted_run_finished(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kw = dict(strategies=["lwf"], budget="tiny", baselines="none", epochs=1, n_boot=20)
    first = simulate(toy.spec.name, ["a", "b"], tmp_path, **kw)
    bdir = tmp_path / "batons" / "lwf" / "a-b"
    lap1 = (bdir / "1-a.baton").read_bytes()
    (bdir / "2-b.baton").unlink()  # killed during the second lap: its baton was never written
    lines: list[str] = []
    again = simulate(toy.spec.name, ["a", "b"], tmp_path, log=lines.append, **kw)
    assert [ln for ln in lines if "taken over" in ln] == [ln for ln in lines if "lap 1 (a): taken over from 1-a.baton" in ln] != []
    assert (bdir / "1-a.baton").read_bytes() == lap1  # not retrained
    assert again["runs"][0]["R"] == first["runs"][0]["R"]  # same seed: the same result as the uninterrupted run
    assert [t["site"] for t in again["runs"][0]["laps_taken_over"]] == ["a"]
    # other training settings (here a smaller sample cap, then more epochs) or strategy settings never take over a lap
    lines.clear()
    simulate(toy.spec.name, ["a", "b"], tmp_path, log=lines.append, **{**kw, "max_train": 4})
    assert not any("taken over" in ln for ln in lines)
    lines.clear()
    simulate(toy.spec.name, ["a", "b"], tmp_path, log=lines.append, **{**kw, "epochs": 2})
    assert not any("taken over" in ln for ln in lines)
    lines.clear()
    simulate(toy.spec.name, ["a", "b"], tmp_path, log=lines.append, strategy_opts={"lwf": {"alpha": 2.0}}, **kw)
    assert not any("taken over" in ln for ln in lines)


def test_simulate_cli_refuses_bad_values_before_writing_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an audit: an unknown strategy or site was refused only after the out folder and initial weights
    were written; --opt for a strategy not run, or an empty --strategy, were silently ignored; --jobs 0, --max-test 0
    and --lr -1 ran or crashed with a traceback."""
    from medzoo.cli.main import main

    out = tmp_path / "o"
    base = ["relay", "simulate", "--task", "midline", "--sites", "synth-a,synth-b", "--budget", "tiny",
            "--baselines", "none", "--out", str(out)]
    for extra, msg in ((["--strategy", "nosuch"], "unknown strategy"),
                       (["--strategy", "lwf", "--opt", "ewc.lam=3"], "does not run"),
                       (["--strategy", "lwf", "--opt", "lwf.bogus=1"], "unknown option"),
                       (["--strategy", ""], "names no strategy"),
                       (["--strategy", "lwf", "--external", "nosite"], "neither a built-in site"),
                       (["--strategy", "lwf", "--lap-epochs", "a,b"], "comma-separated whole numbers")):
        assert main(base + extra) == 2, extra
        assert msg in capsys.readouterr().err, extra
    for extra in (["--jobs", "0"], ["--max-test", "0"], ["--lr", "-1"]):
        with pytest.raises(SystemExit):
            main(base + ["--strategy", "lwf", *extra])
        assert "must be" in capsys.readouterr().err
    assert not out.exists()


def test_an_interrupted_serial_simulation_keeps_its_finished_baselines(toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Baselines of a serial call were kept only in relay_results.json, written at the very end: a call killed
    during the last baseline lost all of them (found by an audit). Each finished baseline is now saved at once."""
    from medzoo.relay import baselines as bl
    from medzoo.relay import simulate as sim

    kw = dict(strategies=["naive"], budget="tiny", baselines=["single", "pooled", "cyclic"], epochs=1, n_boot=20,
              log=lambda s: None)

    def killed(*a, **k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(bl, "train_cyclic", killed)
        with pytest.raises(KeyboardInterrupt):
            simulate(toy.spec.name, ["a", "b"], tmp_path, **kw)
    kept = json.loads((tmp_path / sim.PARTIAL_BASELINES).read_text())["baselines"]
    assert set(kept) == {"single:a", "single:b", "pooled"}
    lines: list[str] = []
    again = simulate(toy.spec.name, ["a", "b"], tmp_path, **{**kw, "log": lines.append})
    assert set(again["reused"]["baselines"]) == {"single", "pooled"}  # taken over; only cyclic trained now
    assert again["baselines"]["pooled"]["row"] == kept["pooled"]["row"]
    assert "cyclic" in again["baselines"] and not (tmp_path / sim.PARTIAL_BASELINES).exists()
    fresh = simulate(toy.spec.name, ["a", "b"], tmp_path / "fresh", **kw)  # the same numbers as an uninterrupted call
    assert {k: v["row"] for k, v in fresh["baselines"].items()} == {k: v["row"] for k, v in again["baselines"].items()}
