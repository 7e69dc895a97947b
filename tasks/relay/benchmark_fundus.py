"""Fundus vessels relay comparison on real data: DRIVE -> STARE -> HRF (issue 3's targets), at a documented budget.

    nice -n 10 python tasks/relay/benchmark_fundus.py --preset smoke     # minutes: proves the pipeline only
    python tasks/relay/benchmark_fundus.py --preset reduced              # the 2-core CPU budget (see below)
    python tasks/relay/benchmark_fundus.py --preset full --device cuda --jobs 9  # the same, scaled up on a GPU

Phase 1 runs every strategy in the order DRIVE -> STARE -> HRF and every baseline (single-site, pooled, cyclic
weight transfer, FedAvg, ensemble); phase 2 runs the best non-naive strategy over all 6 site orders. It writes
docs/benchmarks/relay_fundus.json and .md (``relay_fundus_full`` / ``relay_fundus_smoke`` for those presets;
``--name`` for another name, ``--publish-dir`` for another folder: ``--out`` is only the run folder) with
the accuracy matrices, BWT, forgetting, bootstrap CIs, and a
measured (never asserted) check of each target:

* the best relay strategy's final mean Dice is within 0.01 of pooled central training;
* it beats every single-site model on the sites that model never saw;
* its BWT (Dice) is >= -0.01 and above naive fine-tuning's;
* the 6-order study's spread of the final mean;
* the whole comparison's wall time (target < 2 h on a 2-core CPU at the reduced budget).

Presets (training samples are 256 px patches, 8 per image and epoch; test samples are whole images, Dice in the FOV):

| preset | epochs/site | train patches/site | test images/site | generator epochs | cyclic cycles / FedAvg rounds | order study |
|---|---|---|---|---|---|---|
| smoke | 1 | 8 | 2 | 2 | 2 / 3 | no |
| reduced | 6 | 96 | 8 | 10 | 2 / 3 | yes |
| full | 20 | all (160 / 80 / 120) | all (20 / 8 / 27) | 40 | 3 / 5 | yes |

Resuming: each phase writes ``relay_results.json`` in its run folder (``--out``/<preset>/main and .../orders); a
rerun takes over every finished run from there whose strategy, settings, order, budget, seed and initial weights
are the same (``simulate(reuse=...)``) and trains only the rest, e.g. a strategy whose settings changed. A reused
run counts with the wall time recorded when it ran, one after another: the reported wall time is then an upper bound
on the whole comparison's (runs taken over from a parallel call could have shared the cores), so it can show the 2 h
target met but never missed; above 2 h with runs taken over, the target reads "not measured" (``taken_over_s`` in
the JSON).
``--skip-orders`` publishes phase 1 alone (the order study then reads "not run").

Choosing settings: ``--validation`` trains on each site's ``fit`` split and measures on its ``val`` split (every 5th
training image held out: DRIVE 4, STARE 2, HRF 3 images), never on the test split; it publishes
``relay_fundus_validation`` (run folder ``--out``/<preset>-validation).

Per-image normalisation statistics: ``--norm-eval image`` gives every method's network (relays and baselines
alike) BatchNorm statistics computed from each test image at inference instead of the running statistics
(:mod:`medzoo.norm`); training is unchanged. It publishes ``relay_fundus[_<preset>]_image`` (run folder
``--out``/<preset>-image); the Relay Learning recipe then runs with ``norm_stats=adapt``, as the running
statistics that ``freeze`` keeps are never used.

Parallel (``--jobs N``, e.g. several processes sharing one GPU): each phase runs as ``simulate(jobs=N)``: parts (one
per strategy and order, one per baseline group) as N processes at a time under ``--out``/<preset>/<phase>/parts/,
then taken over (:mod:`medzoo.relay.parallel`). A rerun after an interruption keeps every finished part. The wall
time is then each phase's elapsed time plus the recorded time of runs taken over from an earlier call; ``parallel``
in the JSON gives the parts' own times (each slowed by sharing the machine).

All methods start from the same random initialisation (``pretrained=False``; the shipped fundus-vessels weights
already saw all three sites, so they cannot serve as a fair starting point).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, add_publish_dir, publish

from medzoo.cli.argtypes import positive_float
from medzoo.tasks.fundus.transforms import AUGMENT_LEVELS

SITES = ["drive", "stare", "hrf"]
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"epochs": 1, "max_train": 8, "max_test": 2, "gen_epochs": 2, "n_boot": 200, "order_study": False,
              "strategies": ["naive", "lwf", "relay"], "baselines": ["single", "pooled"]},
    "reduced": {"epochs": 6, "max_train": 96, "max_test": 8, "gen_epochs": 10, "n_boot": 1000, "order_study": True,
                "strategies": "all", "baselines": "all"},
    "full": {"epochs": 20, "max_train": None, "max_test": None, "gen_epochs": 40, "n_boot": 2000, "order_study": True,
             "strategies": "all", "baselines": "all"},
}


# Settings the benchmark gives a strategy (``--opt`` overrides them). The Relay Learning recipe keeps BatchNorm running
# statistics as they arrived at later sites: otherwise its replayed generator samples (blurred 64 px images) set
# them, and the network collapses (docs/relay_results.md). The other strategies run with their defaults: with
# norm_stats=freeze LwF forgot less in the given order but ended lower over the six orders
# (docs/benchmarks/relay_fundus_ablation_bnfreeze_all.md).
STRATEGY_OPTS: dict[str, dict[str, str]] = {"relay": {"norm_stats": "freeze"}}


def preset_budget(preset: str) -> Any:
    """The preset's :class:`~medzoo.relay.simulate.Budget`, every field explicit (``None`` = all samples)."""
    from dataclasses import replace

    from medzoo.relay.simulate import BUDGETS

    p = PRESETS[preset]
    return replace(BUDGETS["full" if preset == "full" else "small"], epochs=p["epochs"], max_train=p["max_train"],
                   max_test=p["max_test"], gen_epochs=p["gen_epochs"], n_boot=p["n_boot"])


def run_budget(preset: str, lap_epochs: str | None = None, lr: float | None = None, augment: str | None = None) -> Any:
    """The preset's budget with the command line's ``--lap-epochs``, ``--lr`` and ``--augment`` applied (all recorded
    in the published budget, so a run at another learning rate is never taken over as one at the preset's)."""
    from dataclasses import replace

    budget = preset_budget(preset)
    if lap_epochs:
        budget = replace(budget, lap_epochs=tuple(int(x) for x in lap_epochs.split(",")))
    if lr is not None:
        if not (lr > 0 and math.isfinite(lr)):
            raise SystemExit(f"--lr must be a positive finite number, got {lr}")
        budget = replace(budget, lr=float(lr))
    if augment is not None:
        budget = replace(budget, augment=augment)
    return budget


def default_name(preset: str, validation: bool = False, norm_eval: str = "running") -> str:
    """Where a preset publishes by default: one file per preset (and for the validation split and per-image
    statistics), so a GPU run never overwrites the CPU one."""
    return ("relay_fundus" + ("" if preset == "reduced" else f"_{preset}") + ("_validation" if validation else "")
            + ("_image" if norm_eval == "image" else ""))


def parse_baselines(text: str) -> str | list[str]:
    """``--baselines``: ``all`` or ``none`` as they are, else a comma list of names (simulate refuses unknown ones)."""
    text = text.strip()
    return text if text in ("all", "none") else [x.strip() for x in text.split(",") if x.strip()]


def check_targets(res: dict[str, Any], order_res: dict[str, Any] | None, wall_s: float,
                  taken_over_s: float = 0.0) -> dict[str, Any]:
    """Measured answers to issue 3's targets (booleans and the numbers behind them).

    ``wall_s`` is this call's elapsed time plus ``taken_over_s``, the recorded run times of the runs and baselines
    taken over from earlier results, counted one after another. That sum bounds the wall time from above (the runs
    could have shared the cores), so it can show the 2 h target met, but not missed: with runs taken over and a sum
    of 2 h or more, ``under_2h`` is ``None`` (not measured), never ``False``."""
    runs = [r for r in res["runs"] if r["order"] == SITES]
    cands = [r for r in runs if r["strategy"] != "naive"] or runs
    best = max(cands, key=lambda r: r["final_avg"])
    naive = next((r for r in runs if r["strategy"] == "naive"), None)
    base = res["baselines"]
    out: dict[str, Any] = {"best_strategy": best["strategy"], "best_final_avg": best["final_avg"], "best_bwt": best["bwt"]}
    if "pooled" in base:
        gap = base["pooled"]["final_avg"] - best["final_avg"]
        out["within_0.01_of_pooled"] = {"pooled": base["pooled"]["final_avg"], "gap": gap, "met": gap <= 0.01}
    singles = {k.split(":", 1)[1]: v for k, v in base.items() if k.startswith("single:")}
    if singles:
        cmp = {f"{s}->{t}": {"relay": best["final_row"][t], "single": v["row"][t], "met": best["final_row"][t] > v["row"][t]}
               for s, v in singles.items() for t in SITES if t != s}
        out["beats_single_site_on_unseen"] = {"pairs": cmp, "met": all(c["met"] for c in cmp.values())}
    out["bwt_at_least_-0.01"] = {"bwt": best["bwt"], "met": best["bwt"] >= -0.01}
    if naive is not None:
        out["bwt_better_than_naive"] = {"naive_bwt": naive["bwt"], "met": best["bwt"] > naive["bwt"]}
    if order_res and order_res.get("order_study"):
        out["order_study"] = order_res["order_study"].get(best["strategy"])
    complete = bool(order_res and order_res.get("order_study"))
    if wall_s < 7200:
        under = True if complete else None
    else:
        under = None if taken_over_s > 0 else False
    out["wall_time"] = {"seconds": round(wall_s, 1), "taken_over_s": round(taken_over_s, 1), "complete": complete,
                        "under_2h": under}
    return out


def targets_md(t: dict[str, Any], preset: str) -> str:
    L = ["", f"## Issue 3 targets (measured, preset `{preset}`)", ""]
    if preset == "smoke":
        L += ["**Smoke budget: these checks only prove the pipeline; the numbers say nothing about the method.**", ""]
    L.append(f"- best non-naive strategy: `{t['best_strategy']}`, final mean Dice {t['best_final_avg']:.4f}, BWT {t['best_bwt']:.4f}")
    for k, v in t.items():
        if isinstance(v, dict) and "met" in v:
            shown = {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items() if kk not in ("pairs", "met")}
            L.append(f"- {k}: **{'met' if v['met'] else 'NOT met'}**" + (f" {shown}" if shown else ""))
            for pair, c in v.get("pairs", {}).items():
                L.append(f"  - single-site model of {pair.split('->')[0]} on unseen {pair.split('->')[1]}: "
                         f"{c['single']:.4f} vs best strategy {c['relay']:.4f} ({'beaten' if c['met'] else 'NOT beaten'})")
    if not t.get("order_study") and preset != "smoke":
        L.append("- site-order study: **not run** in this publication (`--skip-orders`); run the command without it to add it")
    if t.get("order_study"):
        o = t["order_study"]
        L.append(f"- site-order study ({o['n_orders']} orders): final mean {o['final_avg_mean']:.4f} ± {o['final_avg_std']:.4f} "
                 f"(min {o['final_avg_min']:.4f}, max {o['final_avg_max']:.4f})")
    w = t["wall_time"]
    sub = w.get("taken_over_s", 0.0)
    note = (f"; {sub} s of it are the recorded times of runs taken over from earlier results, counted one after "
            "another: an upper bound, not a measured wall time" if sub else "")
    if w.get("complete", True):
        verdict = {True: "yes", False: "no", None: "not measured (the upper bound exceeds it)"}[w["under_2h"]]
        L.append(f"- wall time: {w['seconds']} s{note} (under 2 h: {verdict})")
    else:
        L.append(f"- wall time of phase 1 alone: {w['seconds']} s{note} (the 2 h target covers both phases; under 2 h: "
                 f"{'no, phase 1 alone exceeds it' if w['under_2h'] is False else 'not measured'})")
    return "\n".join(L) + "\n"


def _prior(folder: Path) -> list[Path]:
    """The phase's earlier results, offered to ``simulate(reuse=...)``: every run whose strategy, settings, order,
    budget, seed and initial weights match is taken over, the rest is trained. Each earlier ``relay_results.json``
    is first kept as ``history/relay_results-<time>.json`` (the new run overwrites the file), so a setting tried
    once and dropped again is not trained twice."""
    import shutil

    done = folder / "relay_results.json"
    if done.is_file():
        hist = folder / "history"
        hist.mkdir(exist_ok=True)
        shutil.copy2(done, hist / f"relay_results-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(done.stat().st_mtime))}.json")
    return sorted((folder / "history").glob("relay_results-*.json"), reverse=True) if (folder / "history").is_dir() else []


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=list(PRESETS), default="reduced")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "relay-fundus")
    ap.add_argument("--name", default=None, help="benchmark name (default: relay_fundus for the reduced preset, relay_fundus_<preset> for the others)")
    ap.add_argument("--skip-orders", action="store_true", help="publish phase 1 without the 6-order study")
    ap.add_argument("--strategies", default=None, help="comma-separated strategies for phase 1 (default: the preset's)")
    ap.add_argument("--baselines", default=None, help="comma-separated baselines for phase 1, or none (default: the preset's)")
    ap.add_argument("--opt", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
                    help="strategy setting for an ablation, repeatable, e.g. --opt relay.merge=end --opt lwf.alpha=4 "
                         "(use with --name, which names the published files, and --out, the run folder, so neither the "
                         "default publication nor the default run's results are overwritten; or --publish-dir to "
                         "publish elsewhere)")
    ap.add_argument("--validation", action="store_true",
                    help="train on the 'fit' split and measure on 'val' (every 5th training image held out), never on "
                         "the test split: for choosing settings")
    ap.add_argument("--jobs", type=int, default=1,
                    help="run each phase's strategies, baseline groups and orders as this many processes at a time "
                         "(several can share one GPU); default 1: one after the other in this process")
    ap.add_argument("--norm-eval", choices=("running", "image"), default="running",
                    help="BatchNorm statistics at inference for every method: the running ones (default) or each "
                         "image's own (medzoo.norm)")
    ap.add_argument("--lap-epochs", default=None, metavar="E1,E2,E3",
                    help="epochs at each position of a relay's order (default: the preset's epochs at every lap); "
                         "baselines keep the preset's epochs")
    ap.add_argument("--lr", type=positive_float, default=None,
                    help="peak learning rate (AdamW) of every method, strategies and baselines alike (default: the "
                         "budget's, 1e-3)")
    ap.add_argument("--augment", choices=AUGMENT_LEVELS, default=None,
                    help="training augmentation of every method (medzoo.tasks.fundus.transforms.train_augment; "
                         "default: standard, the shipped weights' recipe)")
    ap.add_argument("--reuse", action="append", default=[], type=Path, metavar="FILE",
                    help="an earlier relay_results.json or published benchmark JSON to take matching runs and "
                         "baselines over from (repeatable)")
    add_publish_dir(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import torch

    from medzoo.io import data_root
    from medzoo.relay.simulate import simulate

    data_root(required=True)
    torch.set_num_threads(args.threads)
    p = dict(PRESETS[args.preset])
    if args.strategies:
        p["strategies"] = [x.strip() for x in args.strategies.split(",") if x.strip()]
    if args.baselines:
        p["baselines"] = parse_baselines(args.baselines)
    opts: dict[str, dict[str, str]] = {k: dict(v) for k, v in STRATEGY_OPTS.items()}
    if args.norm_eval == "image":  # running statistics are never used at inference: nothing for freeze to keep
        opts = {k: {kk: vv for kk, vv in v.items() if kk != "norm_stats"} for k, v in opts.items()}
    from medzoo.relay.strategies import list_strategies, parse_strategy_opts

    try:
        for strat, kv in parse_strategy_opts(args.opt).items():
            opts.setdefault(strat, {}).update(kv)
    except ValueError as e:
        raise SystemExit(str(e)) from None

    wanted = list_strategies() if p["strategies"] == "all" else list(p["strategies"])
    budget = run_budget(args.preset, args.lap_epochs, args.lr, args.augment)
    common = dict(budget=budget, seed=args.seed, device=args.device, progress=False,
                  strategy_opts=opts or None, norm_eval=args.norm_eval, **({"train_split": "fit", "test_split": "val"} if args.validation else {}))
    run_dir = args.out / (args.preset + ("-validation" if args.validation else "")
                          + ("-image" if args.norm_eval == "image" else ""))
    main_dir, order_dir = run_dir / "main", run_dir / "orders"
    res = simulate("fundus-vessels", SITES, main_dir, strategies=wanted, baselines=p["baselines"],
                   reuse=[*_prior(main_dir), *args.reuse], jobs=args.jobs, **common)
    walls = {"main": float(res["wall_s"])}
    parallel = {"main": res.get("parallel")}
    order_res = ores = None
    if p["order_study"] and not args.skip_orders:
        import itertools
        import statistics

        runs = [r for r in res["runs"] if r["strategy"] != "naive"] or res["runs"]
        best = max(runs, key=lambda r: r["final_avg"])["strategy"]
        others = [list(o) for o in itertools.permutations(SITES) if list(o) != SITES]
        ores = simulate("fundus-vessels", SITES, order_dir, strategies=[best], orders=others, baselines="none",
                        reuse=_prior(order_dir), jobs=args.jobs, **common)
        walls["orders"] = float(ores["wall_s"])
        parallel["orders"] = ores.get("parallel")
        res["runs"] += [r for r in ores["runs"] if r["strategy"] == best]
        finals = [r["final_avg"] for r in res["runs"] if r["strategy"] == best]
        res["order_study"] = {best: {"n_orders": len(finals), "final_avg_mean": statistics.fmean(finals),
                                     "final_avg_std": statistics.stdev(finals), "final_avg_min": min(finals),
                                     "final_avg_max": max(finals)}}
        order_res = res
    wall = sum(walls.values())
    res["wall_s"] = round(wall, 1)
    taken_over = float(res.get("reused", {}).get("wall_s", 0.0)) + float((ores or {}).get("reused", {}).get("wall_s", 0.0))
    targets = check_targets(res, order_res, wall, taken_over)
    name = args.name or default_name(args.preset, args.validation, args.norm_eval)
    extra = {"preset": args.preset, "splits": {"train": common.get("train_split", "train"), "measured_on": common.get("test_split", "test")}, "preset_settings": p, "strategy_opts": opts, "norm_eval": args.norm_eval, "targets": targets,
             "order_study_run": bool(order_res), "phase_wall_s": walls, "parallel": parallel}
    md = targets_md(targets, args.preset)
    if args.validation:
        md = md.replace("## Issue 3 targets (measured,", "## Issue 3 targets on the VALIDATION split (fit -> val; not test results;")
    if args.jobs > 1:
        own = sum(float(v["sum_of_part_run_times_s"]) for v in parallel.values() if v)
        md += (f"\nRun as {args.jobs} parallel processes (`--jobs`): the wall time is each phase's elapsed time plus the "
               f"recorded time of runs taken over from earlier calls; the parts run in this call took {own:.0f} s of their "
               "own (each slowed by sharing the machine).\n")
    j, m = publish(name, res, run_dir, extra=extra, extra_md=md, bench_dir=args.publish_dir)
    print(targets_md(targets, args.preset))
    print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: run the same command again to take over every finished run", file=sys.stderr)
        sys.exit(130)
