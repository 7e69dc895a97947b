"""The seed-study summary of the fundus relay benchmark computes gaps, BWT counts and the unseen-site check from
the benchmark JSON files, and refuses files run at different budgets."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("seeds_fundus", ROOT / "tasks" / "relay" / "seeds_fundus.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _doc(seed: int, pooled: float, lwf: tuple[float, float, dict], budget: int = 6,  # type: ignore[type-arg]
         naive_bwt: float | None = None) -> dict:  # type: ignore[type-arg]
    final, bwt, row = lwf
    single = {"drive": {"drive": 0.75, "stare": 0.69, "hrf": 0.67}, "stare": {"drive": 0.63, "stare": 0.68, "hrf": 0.67},
              "hrf": {"drive": 0.70, "stare": 0.58, "hrf": 0.73}}
    base = {"pooled": {"final_avg": pooled, "row": {"drive": 0.76, "stare": 0.74, "hrf": 0.75}}}
    R = [[0.75, 0.60, 0.60], [0.74, 0.70, 0.66], [row["drive"], row["stare"], row["hrf"]]]
    base.update({f"single:{k}": {"final_avg": sum(v.values()) / 3, "row": v} for k, v in single.items()})
    naive = [] if naive_bwt is None else [{"strategy": "naive", "settings": {}, "order": ["drive", "stare", "hrf"],
                                           "final_avg": 0.70, "bwt": naive_bwt, "final_row": row, "R": R}]
    return {"results": {"seed": seed, "budget": {"epochs": budget}, "baselines": base,
                        "runs": naive + [{"strategy": "lwf", "settings": {"alpha": 1.0}, "order": ["drive", "stare", "hrf"],
                                  "final_avg": final, "bwt": bwt, "final_row": row, "R": R},
                                 {"strategy": "lwf", "settings": {"alpha": 1.0}, "order": ["hrf", "stare", "drive"],
                                  "final_avg": 0.0, "bwt": -1.0, "final_row": row, "R": R}]}}


def _run(mod, bench_dir: Path) -> int:  # type: ignore[no-untyped-def]
    argv, sys.argv = sys.argv, ["seeds_fundus.py", "--bench-dir", str(bench_dir)]
    try:
        return int(mod.main())
    finally:
        sys.argv = argv


def test_summary_over_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"drive": 0.74, "stare": 0.70, "hrf": 0.74}
    bad = {"drive": 0.74, "stare": 0.66, "hrf": 0.74}  # loses to the DRIVE model on STARE
    (tmp_path / "relay_fundus.json").write_text(json.dumps(_doc(0, 0.75, (0.72, -0.04, bad), naive_bwt=-0.03)))
    newer = _doc(1, 0.74, (0.73, -0.005, good))  # naive did not run at this seed
    newer["results"]["budget"].update(lap_epochs=None, augment="standard")  # fields an older file lacks, at their defaults
    (tmp_path / "relay_fundus_seed1.json").write_text(json.dumps(newer))
    # an ablation run at seed 1 sits beside the seed files: it is not a seed of the benchmark
    (tmp_path / "relay_fundus_seed1_ablation_x.json").write_text(json.dumps(_doc(1, 0.5, (0.1, -0.5, bad))))
    mod = _script()
    assert _run(mod, tmp_path) == 0
    out = json.loads((tmp_path / "relay_fundus_seeds.json").read_text())
    s0, s1 = out["per_seed"]
    assert out["sources"] == ["relay_fundus.json", "relay_fundus_seed1.json"]
    assert s0["strategies"]["lwf"]["gap_to_pooled"] == pytest.approx(0.03)
    assert s0["strategies"]["lwf"]["unseen_pairs_lost"] == ["drive->stare"] and s1["strategies"]["lwf"]["beats_single_on_unseen"]
    agg = out["over_seeds"]["lwf"]
    assert agg["final_avg"]["mean"] == pytest.approx(0.725) and agg["gap_to_pooled"]["mean"] == pytest.approx(0.02)
    # two seeds: t(0.975, 1 dof) = 12.706, so the interval of the mean gap (0.03, 0.01) is 0.02 ± 0.127
    lo, hi = agg["gap_to_pooled"]["ci95_of_mean"]
    assert lo == pytest.approx(0.02 - 0.12706, abs=1e-4) and hi == pytest.approx(0.02 + 0.12706, abs=1e-4)
    assert "- lwf (2 seeds): gap to pooled [-0.1071, 0.1471]" in (tmp_path / "relay_fundus_seeds.md").read_text()
    assert agg["beats_single_on_unseen"] == 1 and agg["bwt_at_least_-0.01"] == 1 and agg["within_0.01_of_pooled"] == 1
    assert "| 1 | 0.7400 | lwf | 0.7300 |" in (tmp_path / "relay_fundus_seeds.md").read_text()
    # naive ran at seed 0 only: compared there (lwf -0.04 forgets more than naive -0.03), listed but not summarised
    assert s0["strategies"]["lwf"]["forgets_less_than_naive"] is False and s1["strategies"]["lwf"]["forgets_less_than_naive"] is None
    assert agg["forgets_less_than_naive"] == {"seeds": 0, "of": 1} and agg["n_seeds"] == 2 and "naive" not in out["over_seeds"]
    assert "| 0 | 0.7500 | naive | 0.7000 | 0.0500 | -0.0300 | – |" in (tmp_path / "relay_fundus_seeds.md").read_text()
    # the gap per site = slower learning (pooled - right after the site) + forgetting (right after - final)
    drive = s0["strategies"]["lwf"]["per_site"]["drive"]
    assert drive["gap"] == pytest.approx(0.02) and drive["pooled_minus_right_after"] == pytest.approx(0.01)
    assert drive["right_after_minus_final"] == pytest.approx(0.01)
    stare = agg["per_site"]["stare"]  # final STARE 0.66 then 0.70, right after 0.70, pooled 0.74
    assert stare["gap"]["mean"] == pytest.approx(0.06) and stare["right_after_minus_final"]["mean"] == pytest.approx(0.02)
    assert agg["per_site"]["hrf"]["right_after_minus_final"]["mean"] == pytest.approx(0.0)
    assert "| lwf | stare | +0.0600 ± 0.0283 | +0.0400 ± 0.0000 | +0.0200 ± 0.0283 |" in (tmp_path / "relay_fundus_seeds.md").read_text()
    assert "test images" not in (tmp_path / "relay_fundus_seeds.md").read_text().split("Final mean Dice")[0]  # budget silent
    assert "same at every seed" in mod.measured_images_sentence({"max_test": None})
    assert "the seed also draws which test images" in mod.measured_images_sentence({"max_test": 8})
    (tmp_path / "relay_fundus_seed2.json").write_text(json.dumps(_doc(2, 0.74, (0.73, -0.005, good), budget=3)))
    assert _run(mod, tmp_path) == 2
    assert "different budgets" in capsys.readouterr().err
    other = _doc(2, 0.74, (0.73, -0.005, good))
    other["results"]["budget"]["augment"] = "strong"  # another augmentation is another budget
    (tmp_path / "relay_fundus_seed2.json").write_text(json.dumps(other))
    assert _run(mod, tmp_path) == 2
    assert "different budgets" in capsys.readouterr().err


def test_files_of_one_seed_are_merged_and_runs_chosen_by_setting(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    row = {"drive": 0.74, "stare": 0.70, "hrf": 0.74}
    first = _doc(3, 0.75, (0.72, -0.02, row), naive_bwt=-0.03)  # naive, LwF (default), single-site, pooled
    first["results"]["init_sha256"] = "a"
    later = _doc(3, 0.75, (0.74, -0.004, row))  # LwF with another setting; pooled taken over from the first call
    later["results"].update(init_sha256="a", baselines={"pooled": first["results"]["baselines"]["pooled"]})
    for r in later["results"]["runs"]:
        r["settings"] = {"alpha": 1.0, "distill_inputs": "both"}
    other_seed = _doc(4, 0.74, (0.735, -0.006, row))
    other_seed["results"]["baselines"] = {"pooled": other_seed["results"]["baselines"]["pooled"]}  # no single-site models
    for r in other_seed["results"]["runs"]:
        r["settings"] = {"alpha": 1.0, "distill_inputs": "both"}
    for name, doc in (("a_seed3", first), ("a_seed3_both", later), ("a_seed4_both", other_seed)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    mod = _script()

    def run(*extra: str) -> int:
        argv, sys.argv = sys.argv, ["seeds_fundus.py", "--bench-dir", str(tmp_path), "--out-name", "both",
                                    "--files", "a_seed3", "a_seed3_both.json", "a_seed4_both", *extra]
        try:
            return int(mod.main())
        finally:
            sys.argv = argv

    # without a setting to choose by, seed 3 has two LwF runs in the given order: refused, nothing written
    assert run() == 2
    assert "more than one lwf run" in capsys.readouterr().err and not (tmp_path / "both_seeds.json").exists()
    assert run("--opt", "lwf.distill_inputs=both", "--opt", "lwf.alpha=1") == 0
    out = json.loads((tmp_path / "both_seeds.json").read_text())
    s3, s4 = out["per_seed"]
    assert s3["seed"] == 3 and sorted(s3["strategies"]) == ["lwf", "naive"]
    assert s3["strategies"]["lwf"]["final_avg"] == pytest.approx(0.74)  # the `both` run, not the default one
    assert s3["strategies"]["lwf"]["forgets_less_than_naive"] is True  # naive from the first call, same seed
    # seed 4 ran no single-site models: not counted as a seed where LwF lost to one (it was once counted so)
    assert s3["strategies"]["lwf"]["beats_single_on_unseen"] and s4["strategies"]["lwf"]["beats_single_on_unseen"] is None
    assert out["over_seeds"]["lwf"]["beats_single_on_unseen"] == 1 and out["over_seeds"]["lwf"]["beats_single_of"] == 1
    md = (tmp_path / "both_seeds.md").read_text()
    assert "| 4 | 0.7400 | lwf | 0.7350 | 0.0050 | -0.0060 | – | – (no single-site models at this seed) |" in md
    assert "| 1/1 | 2/2 | 2/2 |" in md
    assert out["over_seeds"]["lwf"]["gap_to_pooled"]["mean"] == pytest.approx(0.0075)  # (0.01 + 0.005) / 2
    assert "--files a_seed3 a_seed3_both a_seed4_both --opt lwf.distill_inputs=both" in out["command"]
    # a baseline scored differently in two files of one seed, or two inits under one seed: refused
    later["results"]["baselines"] = {"pooled": {**first["results"]["baselines"]["pooled"], "final_avg": 0.7}}
    (tmp_path / "a_seed3_both.json").write_text(json.dumps(later))
    assert run("--opt", "lwf.distill_inputs=both") == 2
    assert "baseline pooled scores 0.7" in capsys.readouterr().err
    later["results"].update(baselines={}, init_sha256="b")
    (tmp_path / "a_seed3_both.json").write_text(json.dumps(later))
    assert run("--opt", "lwf.distill_inputs=both") == 2
    assert "different initial weights" in capsys.readouterr().err
