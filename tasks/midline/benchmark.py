"""Benchmark of the shipped midline weights -> docs/benchmarks/midline.json and .md.

    python tasks/midline/benchmark.py

Measures (never asserts) against the targets of issue 5:

* the unseen SYNTHETIC site synth-x (acquisition settings outside every training site): mean radial error
  (target <= 1.5 mm), SDR@2/4 mm, absolute midline-shift error (<= 1.0 mm), shift >= 5 mm sensitivity /
  specificity / AUROC (>= 0.97), with bootstrap 95% CIs;
* the warped CQ500 template (real-anatomy average CT, warped with known shifts; test only): shift error
  (<= 1.5 mm), with and without a painted subdural haematoma;
* the training sites' held-out test splits (SYNTHETIC, in-distribution, for context);
* inference time per slice through ``model.predict`` (preprocessing included) on this CPU (<= 0.15 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

TARGETS = {"synth-x": {"mre_mm": ("<=", 1.5), "shift_abs_error_mm": ("<=", 1.0), "shift5_auroc": (">=", 0.97)},
           "cq500-warp": {"shift_abs_error_mm": ("<=", 1.5)}, "time": {"s_per_slice": ("<=", 0.15)}}


def bootstrap_ci(values: list[float], n: int = 2000, seed: int = 0) -> list[float]:
    v = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


AUROC_CI_NOTE = ("no AUROC CI: in every bootstrap resample all slices fell on one side of the 5 mm threshold "
                 "(too few slices, or only one class), so the AUROC is undefined")


def auroc_ci(pred: list[float], true: list[float], n: int = 1000, seed: int = 0) -> list[float | None]:
    """Percentile bootstrap 95% CI of the shift >= 5 mm AUROC; ``[None, None]`` (see ``AUROC_CI_NOTE``) when no
    resample has both classes (e.g. a smoke run with --n 4)."""
    import torch

    from medzoo.tasks.midline.metric import shift_detection

    p, t = np.asarray(pred), np.asarray(true)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(p), len(p))
        a = shift_detection(torch.tensor(p[i]), torch.tensor(t[i]))["shift5_auroc"]
        if np.isfinite(a):
            vals.append(a)
    if not vals:
        return [None, None]
    return [round(float(np.percentile(vals, 2.5)), 4), round(float(np.percentile(vals, 97.5)), 4)]


def summarise(res, synthetic: bool) -> dict:  # type: ignore[no-untyped-def]
    out = {"synthetic": synthetic, "n": int(res.metrics["n"]), "metrics": {k: round(v, 4) for k, v in res.metrics.items() if k != "n"},
           "ci95": {"mre_mm": bootstrap_ci(res.per_sample["mre_mm"]),
                    "shift_abs_error_mm": bootstrap_ci(res.per_sample["shift_abs_error_mm"]),
                    "shift5_auroc": auroc_ci(res.per_sample["pred_shift_mm"], res.per_sample["true_shift_mm"])},
           "per_landmark_mre_mm": {k[6:-3]: round(float(np.mean(v)), 4) for k, v in res.per_sample.items() if k.startswith("error_")},
           "max_shift_abs_error_mm": round(float(np.max(res.per_sample["shift_abs_error_mm"])), 4)}
    if out["ci95"]["shift5_auroc"][0] is None:
        out["ci95_note"] = AUROC_CI_NOTE
    return out


def fmt(v: float | None, spec: str = ".4f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, spec)


def check(value: float, rule: tuple[str, float]) -> bool:
    op, thr = rule
    return bool(value <= thr) if op == "<=" else bool(value >= thr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="midline", help="shipped weights name or model file")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timing-slices", type=int, default=30)
    ap.add_argument("--n", type=int, default=None, help="limit every test set to its first N slices (smoke runs only)")
    ap.add_argument("--site-n", type=int, default=60, help="test slices per training site (context rows)")
    args = ap.parse_args(argv)

    import cv2
    import torch
    from torch.utils.data import Subset

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from medzoo import get_task
    from medzoo.cli.models import load_any
    from medzoo.errors import InputError
    from medzoo.io import atomic_write_bytes, atomic_write_json
    from medzoo.tasks.midline.generator import TRAIN_SITES, site_slice

    model = load_any(args.weights)
    task = get_task("midline")
    report: dict = {"task": "midline", "weights": args.weights,
                    "command": "python tasks/midline/benchmark.py" + (f" --n {args.n} (SMOKE RUN, not a result)" if args.n else ""),
                    "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared), torch {torch.__version__}, {args.threads} threads",
                    "weights_trained_on": model.meta.get("sites", []), "results": {}, "targets": {}}
    t0 = time.perf_counter()
    def first(ds):  # type: ignore[no-untyped-def]
        return ds if args.n is None else Subset(ds, range(min(args.n, len(ds))))

    res = task.evaluate(model.net, first(task.build_dataset("synth-x", "test")))
    report["results"]["synth-x (unseen SYNTHETIC site)"] = summarise(res, True)
    print("synth-x", json.dumps(report["results"]["synth-x (unseen SYNTHETIC site)"]["metrics"]), flush=True)

    try:
        from medzoo.tasks.midline.cq500 import CQ500WarpDataset

        for lesion in (True, False):
            key = f"cq500-warp ({'with' if lesion else 'without'} painted SDH; real-anatomy template, synthetic warp)"
            r = task.evaluate(model.net, first(CQ500WarpDataset(lesion=lesion)))
            report["results"][key] = summarise(r, False)
            report["results"][key]["note"] = ("CQ500 template (CC BY-NC-SA 4.0), axial slices 64-68 at the frontal horns, "
                                              "warped with shifts -15..15 mm; evaluation only")
            print(key, json.dumps(report["results"][key]["metrics"]), flush=True)
    except InputError as e:
        report["results"]["cq500-warp"] = {"skipped": str(e)}

    for site in [s for s in TRAIN_SITES if s in report["weights_trained_on"]]:
        ds = task.build_dataset(site, "test")
        r = task.evaluate(model.net, Subset(ds, range(min(args.site_n, len(ds)))))  # type: ignore[arg-type]
        report["results"][f"{site} test (SYNTHETIC, training site, first {args.site_n} held-out slices)"] = summarise(r, True)
        print(site, json.dumps({k: round(v, 3) for k, v in r.metrics.items()}), flush=True)

    # timing through the public predict (validation + resampling + 2 forward passes), native matrices
    times: dict[str, float] = {}
    for site in ("synth-x", "synth-a"):
        slices = [site_slice(site, "test", i) for i in range(args.timing_slices)]
        model.predict(slices[0].hu, slices[0].spacing_mm)        # warm-up
        ts, cs = [], []
        for s in slices:
            t, c = time.perf_counter(), time.process_time()
            model.predict(s.hu, s.spacing_mm)
            ts.append(time.perf_counter() - t)
            cs.append(time.process_time() - c)
        shape = f"{slices[0].hu.shape[0]}x{slices[0].hu.shape[1]} px"
        times[f"{site} ({shape}) median CPU s/slice"] = round(float(np.median(cs)), 4)
        times[f"{site} ({shape}) median wall s/slice (shared, loaded machine)"] = round(float(np.median(ts)), 4)
        times[f"{site} ({shape}) p90 wall s/slice"] = round(float(np.percentile(ts, 90)), 4)
    report["results"]["inference time (CPU)"] = times
    # Several jobs share this 2-core machine while benchmarks run, so wall time includes waiting for the CPU;
    # the process CPU time is what one slice costs on a free core. Both are reported; the target uses CPU time.
    worst = max(v for k, v in times.items() if "median CPU" in k)

    sx = report["results"]["synth-x (unseen SYNTHETIC site)"]["metrics"]
    for k, rule in TARGETS["synth-x"].items():
        report["targets"][f"synth-x {k} {rule[0]} {rule[1]}"] = {"value": sx[k], "met": check(sx[k], rule)}
    cq_key = next((k for k in report["results"] if k.startswith("cq500-warp (with")), None)
    if cq_key:
        v = report["results"][cq_key]["metrics"]["shift_abs_error_mm"]
        report["targets"]["cq500-warp shift_abs_error_mm <= 1.5"] = {"value": v, "met": check(v, TARGETS["cq500-warp"]["shift_abs_error_mm"])}
    report["targets"]["inference CPU s/slice <= 0.15 (worst median, 1 thread)"] = {"value": worst, "met": check(worst, TARGETS["time"]["s_per_slice"])}
    report["benchmark_wall_s"] = round(time.perf_counter() - t0, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "midline.json", report)
    atomic_write_bytes(args.out / "midline.md", to_markdown(report).encode())
    print(json.dumps(report["targets"], indent=1))
    return 0


def to_markdown(r: dict) -> str:
    lines = ["# Benchmark: midline (brain midline landmarks and midline shift)", "",
             f"Measured {r['date_utc']} UTC with `{r['command']}` on {r['machine']}. Weights `{r['weights']}` "
             f"(trained on SYNTHETIC sites {', '.join(r['weights_trained_on'])}). Rows marked SYNTHETIC are measured on "
             "procedurally generated slices; the CQ500 rows use a real-anatomy template (average of real CTs) warped "
             "with a known synthetic shift.", "", "## Targets (issue 5)", "", "| target | measured | met |", "|---|---|---|"]
    for k, v in r["targets"].items():
        lines.append(f"| {k} | {v['value']:.4g} | {'yes' if v['met'] else 'NO'} |")
    lines += ["", "## Results", "", "| test set | n | MRE mm [95% CI] | SDR@2mm | SDR@4mm | shift error mm [95% CI] | max shift error | "
              "shift>=5mm sens | spec | AUROC [95% CI] |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in r["results"].items():
        if "metrics" not in s:
            continue
        m, c = s["metrics"], s["ci95"]
        tag = "SYNTHETIC: " if s["synthetic"] and "SYNTHETIC" not in name else ""
        lines.append(f"| {tag}{name} | {s['n']} | {m['mre_mm']:.3f} [{c['mre_mm'][0]:.3f}, {c['mre_mm'][1]:.3f}] | {m['sdr_2mm']:.3f} | "
                     f"{m['sdr_4mm']:.3f} | {m['shift_abs_error_mm']:.3f} [{c['shift_abs_error_mm'][0]:.3f}, {c['shift_abs_error_mm'][1]:.3f}] | "
                     f"{s['max_shift_abs_error_mm']:.2f} | {m['shift5_sensitivity']:.3f} | {m['shift5_specificity']:.3f} | "
                     f"{fmt(m['shift5_auroc'])} [{fmt(c['shift5_auroc'][0])}, {fmt(c['shift5_auroc'][1])}] |")
    notes = sorted({s["ci95_note"] for s in r["results"].values() if s.get("ci95_note")})
    lines += [""] + [f"n/a: {n_}." for n_ in notes] if notes else []
    lines += ["", "Per-landmark mean radial error (mm):", "", "| test set | falx anterior | septum | falx posterior |", "|---|---|---|---|"]
    for name, s in r["results"].items():
        if "per_landmark_mre_mm" in s:
            p = s["per_landmark_mre_mm"]
            lines.append(f"| {name} | {p.get('falx_anterior', float('nan')):.3f} | {p.get('septum_pellucidum', float('nan')):.3f} | "
                         f"{p.get('falx_posterior', float('nan')):.3f} |")
    lines += ["", "## Inference time (CPU, `model.predict`, preprocessing included)", ""]
    for k, v in r["results"]["inference time (CPU)"].items():
        lines.append(f"- {k}: {v} s")
    lines += ["", "CIs: percentile bootstrap over slices (2000 resamples; AUROC 1000). Shift >= 5 mm: a slice is positive "
              "when |true shift| >= 5 mm, called positive when |predicted shift| >= 5 mm; AUROC ranks |predicted shift|.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
