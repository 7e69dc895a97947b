"""Benchmark of the mediastinum task (SYNTHETIC data) -> docs/benchmarks/mediastinum.json and .md.

    nice -n 10 python tasks/mediastinum/benchmark.py

Measures, on held-out SYNTHETIC test cases:

* the shipped relay weights (weights/mediastinum.safetensors, from train.py) on the unseen-acquisition site
  synth-x and on each training site;
* baselines trained here with the same loop, sites, epochs and seed: pooled central training (all sites' data
  in one place, the same number of sample visits) and naive sequential fine-tuning,
  with the synth-x macro AUROC after each site;
* bootstrap 95% CIs over cases, and a paired bootstrap of (relay - pooled) on synth-x;
* the preprocessing ablation that chose the input channels (pooled training per input mode);
* inference time per case (predict on a volume; predict_path on a NIfTI file) on this CPU, and generation time.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import common  # noqa: F401  (sets sys.path for a source checkout)
import numpy as np
from common import BATCH_SIZE, EPOCHS, LR, ROOT, SEED, THREADS, TRAIN_SITES, UNSEEN_SITE, machine

from medzoo.io import command_line

KEEP = ("auroc_macro", "balanced_accuracy", "accuracy")


def bootstrap(p: Any, t: Any, n_boot: int = 500, seed: int = 0, other: Any = None) -> list[float]:
    """95% percentile CI of macro AUROC over resampled cases (of the difference to ``other`` when given)."""
    from medzoo.tasks.mediastinum.metric import classification_metrics

    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(t), len(t))
        v = classification_metrics(p[idx], t[idx])["auroc_macro"]
        if other is not None:
            v -= classification_metrics(other[idx], t[idx])["auroc_macro"]
        vals.append(v)
    return [round(float(np.nanpercentile(vals, 2.5)), 4), round(float(np.nanpercentile(vals, 97.5)), 4)]


SHIPPED_LABEL = "relay (shipped weights)"


def relay_label(relay_model: Path | None, shipped_card: Path = ROOT / "weights" / "mediastinum.json") -> str:
    """The results' name of the relay model measured: "relay (shipped weights)" for the shipped file or a byte-
    identical copy of it (same sha256 as the shipped card), otherwise "relay (<file name>)"."""
    if relay_model is None:
        return SHIPPED_LABEL
    from medzoo.io import sha256_file

    try:
        shipped_sha = json.loads(shipped_card.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        shipped_sha = None
    if shipped_sha and relay_model.is_file() and sha256_file(relay_model) == shipped_sha:
        return SHIPPED_LABEL
    return f"relay ({relay_model.name})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--no-ablation", action="store_true", help="skip the preprocessing ablation")
    ap.add_argument("--smoke", type=int, default=0, help="use only this many cases per site (a quick check of the script)")
    ap.add_argument("--relay-model", type=Path, default=None, help="evaluate this model file instead of the shipped weights")
    ap.add_argument("--extra-model", action="append", default=[], metavar="NAME=PATH",
                    help="also measure this model file (e.g. a relay run with another strategy); repeatable")
    ap.add_argument("--part", choices=("all", "pooled", "naive", "report"), default="all",
                    help="run one part in its own process: 'pooled' and 'naive' train and save their models to --work, "
                         "'report' waits for them (and for fresh shipped weights) and writes the benchmark")
    ap.add_argument("--work", type=Path, default=Path("/tmp/medzoo-mediastinum-bench"))
    ap.add_argument("--ablation-epochs", type=int, default=6, help="epochs of each ablation run (pooled)")
    ap.add_argument("--wait-weights", type=float, default=0, help="minutes to wait for train.py to write fresh weights")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = ap.parse_args()
    started_at = time.time()

    import torch
    from torch.utils.data import ConcatDataset

    from medzoo import get_task
    from medzoo.relay.strategies import make_strategy
    from medzoo.relay.trainer import TrainConfig, train_site
    from medzoo.tasks import mediastinum
    from medzoo.tasks.mediastinum.generator import generate_case
    from medzoo.tasks.mediastinum.metric import classification_metrics, confusion_matrix
    from medzoo.tasks.mediastinum.preprocess import Preprocess

    torch.set_num_threads(THREADS)
    t_start = time.perf_counter()
    task = get_task("mediastinum")
    cfg = TrainConfig(epochs=args.epochs, batch_size=BATCH_SIZE, lr=LR, seed=SEED)
    log = lambda msg: print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", flush=True)  # noqa: E731

    # -- data (generated once, HU crops cached; shared by every run) ---------------------------------------
    from medzoo.tasks.mediastinum.dataset import SyntheticSite

    n = args.smoke or None
    need_train = args.part in ("all", "pooled", "naive") or not args.no_ablation
    need_test = args.part in ("all", "report")
    train = {s: SyntheticSite(s, "train", task.preprocess, augment=True, n=n) for s in TRAIN_SITES} if need_train else {}
    tests = {s: SyntheticSite(s, "test", task.preprocess, n=n) for s in (UNSEEN_SITE, *TRAIN_SITES)} if need_test else {}
    t0 = time.perf_counter()
    for d in (*train.values(), *tests.values()):
        for i in range(len(d)):  # type: ignore[arg-type]
            d.hu_crop(i)  # type: ignore[attr-defined]
    log(f"generated {sum(len(d) for d in (*train.values(), *tests.values()))} SYNTHETIC cases "  # type: ignore[arg-type]
        f"in {time.perf_counter() - t0:.0f}s")

    def measure(net: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s, d in tests.items():
            p, t, _ = task.predict_proba(net, d)
            m = classification_metrics(p, t)
            out[s] = {"n": len(t), **{k: round(m[k], 4) for k in KEEP}}
            if s == UNSEEN_SITE:
                out[s]["auroc_macro_ci95"] = bootstrap(p, t)
                out[s]["per_class"] = {c: {k: round(m[f"{k}_{c}"], 4) for k in ("auroc", "sens", "spec")}
                                       for c in task.spec.classes}
                out[s]["confusion"] = confusion_matrix(p, t)
                out[s]["_probs"], out[s]["_targets"] = p, t
        return out

    results: dict[str, Any] = {}
    costs: dict[str, float] = {}

    # -- baselines -----------------------------------------------------------------------------------------
    torch.manual_seed(SEED)
    init = task.build_model()
    args.work.mkdir(parents=True, exist_ok=True)
    trajectories: dict[str, list[float]] = {}
    if args.part in ("all", "pooled"):
        t0 = time.process_time()
        pooled = copy.deepcopy(init)
        train_site(task, pooled, ConcatDataset(list(train.values())), cfg, site_name="pooled", progress=False)
        task.wrap(pooled, {"cpu_s": time.process_time() - t0}).save(args.work / "pooled.safetensors")
        log("pooled: trained")
    if args.part in ("all", "naive"):
        net, strat, n_seen = copy.deepcopy(init), make_strategy("naive"), 0
        t0 = time.process_time()
        for i, s in enumerate(TRAIN_SITES):
            train_site(task, net, train[s], cfg, hooks=[strat], site_name=s, site_index=i, n_seen=n_seen, progress=False)
            n_seen += len(train[s])  # type: ignore[arg-type]
            task.wrap(net, {"cpu_s": time.process_time() - t0}).save(args.work / f"naive-{i + 1}.safetensors")
        log("naive: trained")
    if args.part in ("pooled", "naive"):
        return 0
    last = args.work / f"naive-{len(TRAIN_SITES)}.safetensors"
    while not ((args.work / "pooled.safetensors").exists() and last.exists()):
        time.sleep(20)
    time.sleep(5)
    for name, f in (("pooled central", "pooled.safetensors"), ("naive sequential", last.name)):
        tm = mediastinum.load(args.work / f)
        results[name] = measure(tm.net)
        costs[name.split()[0]] = float(tm.meta.get("cpu_s", float("nan")))
        log(f"{name}: synth-x AUROC {results[name][UNSEEN_SITE]['auroc_macro']}")
    trajectories["naive"] = [round(task.evaluate(mediastinum.load(args.work / f"naive-{i + 1}.safetensors").net,
                                                 tests[UNSEEN_SITE]).metrics["auroc_macro"], 4) for i in range(len(TRAIN_SITES))]

    # -- shipped relay weights (train.py may still be running: --wait-weights polls for a fresh card) ----------
    card_path = ROOT / "weights" / "mediastinum.json"
    deadline = time.time() + 60 * args.wait_weights
    while (args.wait_weights and not args.relay_model and (not card_path.exists() or card_path.stat().st_mtime < started_at)
           and time.time() < deadline):
        time.sleep(20)
    waits = [args.relay_model] if args.relay_model else []
    waits += [Path(e.split("=", 1)[1]) for e in args.extra_model]
    waits += [w.with_suffix(".json") for w in waits]  # train.py writes the card last
    while args.wait_weights and not all(w.exists() for w in waits) and time.time() < deadline:
        time.sleep(20)
    time.sleep(5)
    clf = mediastinum.load(args.relay_model) if args.relay_model else mediastinum.pretrained()
    relay = relay_label(args.relay_model)
    results[relay] = measure(clf.net)
    log(f"{relay}: synth-x AUROC {results[relay][UNSEEN_SITE]['auroc_macro']}")

    for spec in args.extra_model:
        name, path = spec.split("=", 1)
        results[name] = measure(mediastinum.load(path).net)
        log(f"{name}: synth-x AUROC {results[name][UNSEEN_SITE]['auroc_macro']}")

    tgt = results["pooled central"][UNSEEN_SITE]["_targets"]
    relay_p = results[relay][UNSEEN_SITE]["_probs"]
    pooled_p = results["pooled central"][UNSEEN_SITE]["_probs"]
    naive_p = results["naive sequential"][UNSEEN_SITE]["_probs"]
    diffs = {"relay_minus_pooled_ci95": bootstrap(relay_p, tgt, other=pooled_p, seed=1),
             "naive_minus_pooled_ci95": bootstrap(naive_p, tgt, other=pooled_p, seed=2),
             "relay_minus_naive_ci95": bootstrap(relay_p, tgt, other=naive_p, seed=3)}

    # -- timing ----------------------------------------------------------------------------------------------
    cases = [generate_case(UNSEEN_SITE, 10_000 + i) for i in range(40)]
    t0 = time.perf_counter()
    gen_times = []
    for i in range(20):
        g0 = time.perf_counter()
        generate_case("synth-b", 20_000 + i)
        gen_times.append(time.perf_counter() - g0)
    clf.predict(cases[0].volume, spacing_mm=cases[0].spacing, bbox=cases[0].bbox)  # warm-up
    pred_times = []
    for c in cases:
        p0 = time.perf_counter()
        clf.predict(c.volume, spacing_mm=c.spacing, bbox=c.bbox)
        pred_times.append(time.perf_counter() - p0)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = [mediastinum.write_nifti(Path(tmp) / f"c{i}.nii.gz", c.volume, c.spacing) for i, c in enumerate(cases[:10])]
        path_times = []
        for pth, c in zip(paths, cases[:10]):
            p0 = time.perf_counter()
            clf.predict_path(pth, bbox=c.bbox)
            path_times.append(time.perf_counter() - p0)
    timing = {"predict_s_median": round(float(np.median(pred_times)), 4), "predict_s_p95": round(float(np.percentile(pred_times, 95)), 4),
              "predict_path_nifti_s_median": round(float(np.median(path_times)), 4),
              "generate_case_s_median": round(float(np.median(gen_times)), 4), "threads": THREADS,
              "n_cases": len(pred_times), "note": "wall time on a shared CPU (other jobs running)"}

    # -- report (written now, and again after the ablation) --------------------------------------------------
    ablation: dict[str, Any] = {}
    card_file = ROOT / "weights" / "mediastinum.json"
    if args.relay_model:
        card_file = args.relay_model.with_suffix(".json")
    card = json.loads(card_file.read_text()) if card_file.exists() else {"extra": {}, "training_cost": {}}

    def save() -> None:
        clean = {name: {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in r.items()}
                 for name, r in results.items()}
        relay_x = results[relay][UNSEEN_SITE]["auroc_macro"]
        pooled_x = results["pooled central"][UNSEEN_SITE]["auroc_macro"]
        naive_x = results["naive sequential"][UNSEEN_SITE]["auroc_macro"]
        out = {
            "benchmark": "mediastinum", "synthetic": True,
            "note": "SYNTHETIC data only: procedurally generated chest-CT-like volumes; no patient data.",
            "command": command_line(), "relay_label": relay,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "setup": {"train_sites": list(TRAIN_SITES), "unseen_site": UNSEEN_SITE, "epochs_per_site": args.epochs,
                      "batch_size": BATCH_SIZE, "lr": LR, "seed": SEED, "input_mode": task.preprocess.mode,
                      "backbone": task.backbone, "ablation_epochs": args.ablation_epochs, "relay_strategy": card["extra"].get("strategy"),
                      "relay_strategy_settings": card["extra"].get("strategy_settings"),
                      "relay_training_cost": card["training_cost"],
                      "baseline_cpu_s": {k: round(v, 1) for k, v in costs.items()}},
            "targets": {
                "unseen_auroc_ge_0.95": {"value": relay_x, "met": relay_x >= 0.95},
                "relay_within_0.02_of_pooled": {"value": round(relay_x - pooled_x, 4), "met": relay_x >= pooled_x - 0.02},
                "naive_worse_than_relay": {"value": round(naive_x - relay_x, 4), "met": naive_x < relay_x},
                "inference_le_0.2_s": {"value": timing["predict_s_median"], "met": timing["predict_s_median"] <= 0.2},
            },
            "results": clean, "paired_bootstrap_synth_x": diffs, "naive_trajectory_synth_x": trajectories,
            "preprocessing_ablation": ablation, "timing": timing,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "mediastinum.json").write_text(json.dumps(out, indent=2) + "\n")
        (args.out / "mediastinum.md").write_text(markdown(out))
        log(f"wrote {args.out / 'mediastinum.json'} and .md")

    save()

    # -- preprocessing ablation (pooled training per input mode) ---------------------------------------------
    if not args.no_ablation:
        acfg = TrainConfig(epochs=args.ablation_epochs, batch_size=BATCH_SIZE, lr=LR, seed=SEED)
        for mode in ("slices+soft", "slices+windows", "slices", "windows"):
            mt = mediastinum.MediastinumTask(mode=mode)  # type: ignore[arg-type]
            pp = Preprocess(mode=mode)  # type: ignore[arg-type]
            sl = slice(1, 2) if mode == "windows" else slice(None)

            def view(d: Any) -> Any:  # same cases, same cached planes, other channels
                v = copy.copy(d)
                v.cfg, v._cache = pp, {k: c[sl] for k, c in d._cache.items()}
                return v

            net = mt.build_model()
            train_site(mt, net, ConcatDataset([view(d) for d in train.values()]), acfg, site_name=mode, progress=False)
            au = {s: mt.evaluate(net, view(d)).metrics["auroc_macro"] for s, d in tests.items()}
            ablation[mode] = {"channels": pp.channels, "synth-x auroc_macro": round(au[UNSEEN_SITE], 4),
                              "train-site test auroc_macro (mean)": round(float(np.mean([au[s] for s in TRAIN_SITES])), 4)}
            log(f"ablation {mode}: {ablation[mode]}")
        save()

    return 0


def markdown(o: dict[str, Any]) -> str:
    x = o["setup"]["unseen_site"]
    lines = [
        "# Mediastinum benchmark (SYNTHETIC data)", "",
        f"All numbers are on **SYNTHETIC** procedurally generated chest-CT-like volumes (no patient data). "
        f"Command: `{o['command']}`; {o['date']}; {o['machine']}.", "",
        f"Relay over {' -> '.join(o['setup']['train_sites'])} ({o['setup']['relay_strategy']} strategy, "
        f"{o['setup']['epochs_per_site']} epochs per site); `{x}` has acquisition settings never seen in training.", "",
        "## Targets", "", "| target | measured | met |", "|---|---|---|",
    ]
    for k, v in o["targets"].items():
        lines.append(f"| {k} | {v['value']} | {'yes' if v['met'] else 'NO'} |")
    lines += ["", f"## Macro AUROC on held-out test splits (SYNTHETIC)", "",
              f"| model | {x} (95% CI) | " + " | ".join(o["setup"]["train_sites"]) + f" | {x} balanced acc |",
              "|---|---|" + "---|" * len(o["setup"]["train_sites"]) + "---|"]
    for name, r in o["results"].items():
        ci = r[x]["auroc_macro_ci95"]
        lines.append(f"| {name} | {r[x]['auroc_macro']:.4f} ({ci[0]:.3f}-{ci[1]:.3f}) | "
                     + " | ".join(f"{r[s]['auroc_macro']:.4f}" for s in o["setup"]["train_sites"])
                     + f" | {r[x]['balanced_accuracy']:.4f} |")
    lines += ["", "Paired bootstrap (500 resamples of synth-x cases), 95% CI of the macro-AUROC difference: "
              + ", ".join(f"{k.replace('_ci95', '')}: [{v[0]}, {v[1]}]" for k, v in o["paired_bootstrap_synth_x"].items()), ""]
    for k, v in o["naive_trajectory_synth_x"].items():
        lines.append(f"{k}: {x} macro AUROC after each site: {v}")
    relay = o.get("relay_label", SHIPPED_LABEL)
    lines += ["", f"## Per class on {x}, {relay}", "", "| class | AUROC | sensitivity | specificity |", "|---|---|---|---|"]
    for c, m in o["results"][relay][x]["per_class"].items():
        lines.append(f"| {c} | {m['auroc']:.4f} | {m['sens']:.4f} | {m['spec']:.4f} |")
    lines += ["", "Confusion matrix (rows: true, columns: predicted; order thymoma, lymphoma, teratoma, neurogenic, cyst): "
              f"`{o['results'][relay][x]['confusion']}`", ""]
    if o["preprocessing_ablation"]:
        lines += [f"## Preprocessing ablation (pooled training, {o['setup']['ablation_epochs']} epochs per run)", "",
                  "| input mode | channels | synth-x macro AUROC | training-site tests (mean) |", "|---|---|---|---|"]
        for mode, a in o["preprocessing_ablation"].items():
            lines.append(f"| {mode} | {a['channels']} | {a['synth-x auroc_macro']:.4f} | {a['train-site test auroc_macro (mean)']:.4f} |")
        lines.append("")
    t = o["timing"]
    lines += ["## Speed (this CPU, shared)", "",
              f"- predict (volume in memory): median {t['predict_s_median']} s, p95 {t['predict_s_p95']} s per case ({t['threads']} threads)",
              f"- predict_path (NIfTI read included): median {t['predict_path_nifti_s_median']} s",
              f"- generate one synthetic case: median {t['generate_case_s_median']} s", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
