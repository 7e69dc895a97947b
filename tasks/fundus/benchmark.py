"""Benchmark of the shipped fundus weights: accuracy on the held-out test splits and CPU inference time.

    python tasks/fundus/benchmark.py            # writes docs/benchmarks/fundus.json and docs/benchmarks/fundus.md

Loads ``fundus.pretrained("vessels")`` and ``fundus.pretrained("disc")`` (sha256-checked), evaluates DRIVE test (20),
STARE test (8), HRF test (27) and Drishti-GS1 test (51) with the tasks' own ``evaluate``, times the full
``predict`` (pre-processing + network + post-processing) and the bare network forward pass (median of ``--repeat``
runs, after one warm-up), and compares every number with its target.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from common import command_line

import numpy as np
import torch

from medzoo.io import atomic_write_bytes, atomic_write_json, data_root, read_mask, read_rgb
from medzoo.tasks import fundus
from medzoo.tasks.fundus import transforms as T
from medzoo.tasks.fundus.metric import vessel_metrics
from medzoo.tasks.fundus.sources import builtin_records

REPO = Path(__file__).resolve().parents[2]
# (set, metric, comparison, target)
TARGETS = [("drive-test", "dice", ">=", 0.80), ("drive-test", "auc", ">=", 0.97), ("stare-test", "dice", ">=", 0.78),
           ("hrf-test", "dice", ">=", 0.78), ("drishti-test", "dice_disc", ">=", 0.95),
           ("drishti-test", "dice_cup", ">=", 0.85), ("drishti-test", "vcdr_abs_err", "<=", 0.08),
           ("timing", "vessels_predict_565x584_median_s", "<=", 0.30)]


def _times(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def second_observer() -> dict[str, float]:
    """DRIVE test: the 2nd human observer scored against the 1st (the usual human reference)."""
    per = []
    for r in builtin_records("drive", "test"):
        p2 = r.mask.parent.parent / "masks_2nd_observer" / r.mask.name.replace("manual1", "manual2")  # type: ignore[union-attr]
        per.append(vessel_metrics(read_mask(p2).astype(np.float32), read_mask(r.mask), read_mask(r.fov)))  # type: ignore[arg-type]
    return {k: round(float(np.mean([m[k] for m in per])), 4) for k in ("dice", "sensitivity", "specificity", "accuracy")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_root()
    load_before = os.getloadavg()

    results: dict[str, dict[str, float]] = {}
    per_sample: dict[str, dict[str, object]] = {}
    v = fundus.pretrained("vessels")
    d = fundus.pretrained("disc")
    for site in ("drive", "stare", "hrf"):
        res = v.task.evaluate(v.net, v.task.build_dataset(site, "test"), threshold=v.threshold)
        results[f"{site}-test"] = {k: round(x, 4) for k, x in res.metrics.items()} | {"n": len(res.ids)}
        per_sample[f"{site}-test"] = {"ids": list(res.ids), **{k: [round(x, 4) for x in vals] for k, vals in res.per_sample.items()}}
    res = d.task.evaluate(d.net, d.task.build_dataset("drishti", "test"), threshold=d.threshold, shape=d.disc_shape)
    results["drishti-test"] = {k: round(x, 4) for k, x in res.metrics.items()} | {"n": len(res.ids)}
    per_sample["drishti-test"] = {"ids": list(res.ids), **{k: [round(x, 4) for x in vals] for k, vals in res.per_sample.items()}}

    rgb = read_rgb(builtin_records("drive", "test")[0].image)  # 565 x 584
    x = torch.from_numpy(T.pad_to_multiple(T.vessel_input(rgb, T.derive_fov(rgb)))[0].transpose(2, 0, 1).copy())[None]
    drgb = read_rgb(builtin_records("drishti", "test")[0].image)
    dx = torch.from_numpy(T.pad_to_multiple(T.disc_input(T.resize(drgb, fundus.datasets.disc_network_size(*drgb.shape[:2]))))[0]
                          .transpose(2, 0, 1).copy())[None]
    with torch.inference_mode():
        raw = {
            "vessels_predict_565x584": _times(lambda: v.predict(rgb), args.repeat),
            "vessels_forward_1x1x608x576": _times(lambda: v.net(x), args.repeat),
            f"disc_predict_{drgb.shape[1]}x{drgb.shape[0]}": _times(lambda: d.predict(drgb), args.repeat),
            f"disc_forward_1x3x{dx.shape[2]}x{dx.shape[3]}": _times(lambda: d.net(dx), args.repeat),
        }
    results["timing"] = {f"{k}_{stat}_s": round(f(ts), 4) for k, ts in raw.items()
                         for stat, f in (("median", statistics.median), ("min", min))}

    checks = []
    for s, k, op, target in TARGETS:
        val = results.get(s, {}).get(k)
        ok = val is not None and (val >= target if op == ">=" else val <= target)
        checks.append({"set": s, "metric": k, "target": f"{op} {target}", "value": val, "pass": bool(ok)})
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
               "loadavg_at_start": [round(x, 2) for x in load_before], "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
               "note": "shared machine: other jobs ran at the same time, so timings are upper bounds"}
    report = {"command": command_line(), "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine, "weights": {"fundus-vessels": v.meta["sha256"], "fundus-disc": d.meta["sha256"]},
              "settings": {"fundus-vessels": {"threshold": v.threshold},
                           "fundus-disc": {"threshold": d.threshold, "disc_shape": d.disc_shape}},
              "results": results, "human_reference_drive_2nd_observer": second_observer(), "targets": checks,
              "per_sample": per_sample}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "fundus.json", report)
    atomic_write_bytes(args.out / "fundus.md", render_md(report).encode())
    print(render_md(report))
    return 0


def render_md(r: dict) -> str:  # type: ignore[type-arg]
    lines = ["# Fundus benchmark (shipped weights, real data)", "",
             f"Command: `{r['command']}`  ", f"Date: {r['date_utc']}  ",
             f"Machine: {r['machine']['processor']}, {r['machine']['cpu_count']} CPU cores, torch {r['machine']['torch']} "
             f"with {r['machine']['torch_threads']} threads; load average at start {r['machine']['loadavg_at_start']} "
             f"({r['machine']['note']})  ",
             f"Weights sha256: fundus-vessels `{r['weights']['fundus-vessels'][:16]}…`, fundus-disc `{r['weights']['fundus-disc'][:16]}…`",
             "", "## Accuracy on held-out test splits (mean of per-image values)", "",
             "Post-processing as the model cards set it: " + "; ".join(
                 f"{n}: " + ", ".join(f"{k} {v}" for k, v in st.items()) for n, st in r.get("settings", {}).items()), "",
             "| test set | n | metrics |", "|---|---|---|"]
    for s, m in r["results"].items():
        if s == "timing":
            continue
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "n")
        lines.append(f"| {s} | {m['n']} | {shown} |")
    h = r["human_reference_drive_2nd_observer"]
    lines += ["", f"Human reference (DRIVE test, 2nd observer vs 1st): " + ", ".join(f"{k} {v:.4f}" for k, v in h.items()),
              "", "## CPU inference time (median and minimum of --repeat runs after one warm-up; predict = pre-processing + network + post-processing, forward = network only)", "", "| what | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in r["results"]["timing"].items()]
    lines += ["", "## Targets", "", "| set | metric | target | measured | pass |", "|---|---|---|---|---|"]
    for c in r["targets"]:
        val = "n/a" if c["value"] is None else f"{c['value']:.4f}"
        lines.append(f"| {c['set']} | {c['metric']} | {c['target']} | {val} | {'PASS' if c['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
