"""Reports of a relay simulation: the accuracy matrix as text, Markdown tables and a heatmap PNG (OpenCV)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFINITIONS = {
    "R": "R[i][j] = primary metric on site j's test split after training on the i-th site of the order",
    "final_avg": "mean over training sites of the final model's metric: mean_j R[T-1][j]",
    "bwt": "backward transfer (Lopez-Paz & Ranzato 2017): mean_{j<T-1} (R[T-1][j] - R[j][j]); negative = forgetting "
           "(sign flipped for lower-is-better metrics)",
    "forgetting": "average forgetting (Chaudhry et al. 2018, max-based): mean_{j<T-1} max_{l<T-1} (R[l][j] - R[T-1][j]); "
                  "positive = loss",
    "fwt": "forward transfer (Lopez-Paz & Ranzato 2017): mean_{j>=1} (R[j-1][j] - b[j]), b = initial model's metric",
    "ci": "95% percentile bootstrap over test images, resampled within each site (paired for BWT)",
    "external": "final model's metric on sites never trained on",
}


def _f(v: Any, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{nd}f}"


def _ci(ci: Mapping[str, Sequence[float]], key: str) -> str:
    if key not in ci:
        return ""
    lo, hi = ci[key]
    return f" [{lo:.3f}, {hi:.3f}]"


def matrix_text(R: Sequence[Sequence[float]], order: Sequence[str], title: str = "") -> str:
    """The accuracy matrix as an aligned text table (rows: after training on; columns: tested on)."""
    w = max(10, *(len(s) + 2 for s in order))
    lines = [title] if title else []
    lines.append(" " * 14 + "".join(f"{s:>{w}}" for s in order))
    for s, row in zip(order, R):
        lines.append(f"after {s:<8}" + "".join(f"{v:>{w}.4f}" for v in row))
    return "\n".join(lines)


def summary_text(res: Mapping[str, Any]) -> str:
    tag = "SYNTHETIC " if res["synthetic"] else ""
    m = res["primary_metric"]
    out = [f"\n{tag}accuracy matrices ({m}) — task {res['task']}"]
    for r in res["runs"]:
        out.append(matrix_text(r["R"], r["order"], f"\n{tag}{r['strategy']} [{' -> '.join(r['order'])}]"))
        out.append(f"  final avg {_f(r['final_avg'])}{_ci(r['ci'], 'final_avg')}  BWT {_f(r['bwt'])}{_ci(r['ci'], 'bwt')}  "
                   f"forgetting {_f(r['forgetting'])}  FWT {_f(r['fwt'])}"
                   + ("  external " + ", ".join(f"{k}={_f(v)}" for k, v in r["external"].items()) if r["external"] else ""))
    if res["baselines"]:
        out.append(f"\n{tag}baselines (final {m} per site)")
        for name, b in res["baselines"].items():
            out.append(f"  {name:<16} avg {_f(b['final_avg'])}{_ci(b['ci'], 'final_avg')}  "
                       + "  ".join(f"{k}={_f(v)}" for k, v in {**b["row"], **b["external"]}.items()))
    for s, o in res.get("order_study", {}).items():
        out.append(f"  {tag}order study {s}: {o['n_orders']} orders, final avg {o['final_avg_mean']:.4f} ± {o['final_avg_std']:.4f} "
                   f"(min {o['final_avg_min']:.4f}, max {o['final_avg_max']:.4f})")
    return "\n".join(out)


def markdown(res: Mapping[str, Any]) -> str:
    """The whole comparison as Markdown."""
    tag = "SYNTHETIC " if res["synthetic"] else ""
    m = res["primary_metric"]
    L = [f"# {tag}Relay simulation: {res['task']}", ""]
    if res["synthetic"]:
        L += ["**SYNTHETIC data**: every number below comes from procedurally generated sites, not patients.", ""]
    L += [f"Sites (training order as given): {', '.join(res['sites'])}; external: {', '.join(res['external']) or 'none'}. "
          f"Metric: `{m}` ({'higher' if res['higher_is_better'] else 'lower'} is better). Budget: `{res['budget']}`. "
          f"Seed {res['seed']}, device {res['device']}, init {res['init']}. Wall time {res['wall_s']} s.", ""]
    if res.get("norm_eval") == "image":
        L += ["BatchNorm statistics at inference: **each image's own** (`norm_eval=image`, medzoo.norm), for every "
              "method; training unchanged.", ""]
    splits = (res.get("train_split", "train"), res.get("test_split", "test"))
    if splits != ("train", "test"):
        L += [f"**Trained on split `{splits[0]}`, measured on split `{splits[1]}`** (not the test split).", ""]
    has_ci = any(r.get("ci") for r in res["runs"]) or any(b.get("ci") for b in res["baselines"].values())
    if not has_ci:
        L += [f"No confidence intervals: `{m}` has no per-sample values to resample (a whole-set metric such as a "
              "macro AUROC).", ""]
    ci_head = " [95% CI]" if has_ci else ""
    L += ["## Summary", "", f"| method | order | final avg {m}{ci_head} | BWT{ci_head} | forgetting | FWT | "
          + " | ".join(f"{s}" for s in res["sites"]) + (" | " + " | ".join(f"ext: {x}" for x in res["external"]) if res["external"] else "") + " |",
          "|" + "---|" * (6 + len(res["sites"]) + len(res["external"]))]
    for r in res["runs"]:
        L.append(f"| relay: {r['strategy']} | {' → '.join(r['order'])} | {_f(r['final_avg'])}{_ci(r['ci'], 'final_avg')} | "
                 f"{_f(r['bwt'])}{_ci(r['ci'], 'bwt')} | {_f(r['forgetting'])} | {_f(r['fwt'])} | "
                 + " | ".join(_f(r["final_row"].get(s)) for s in res["sites"])
                 + (" | " + " | ".join(_f(r["external"].get(x)) for x in res["external"]) if res["external"] else "") + " |")
    for name, b in res["baselines"].items():
        L.append(f"| baseline: {name} | – | {_f(b['final_avg'])}{_ci(b['ci'], 'final_avg')} | – | – | – | "
                 + " | ".join(_f(b["row"].get(s)) for s in res["sites"])
                 + (" | " + " | ".join(_f(b["external"].get(x)) for x in res["external"]) if res["external"] else "") + " |")
    if res.get("order_study"):
        L += ["", "## Site-order study", "", "| strategy | orders | mean final avg | std | min | max |", "|---|---|---|---|---|---|"]
        for s, o in res["order_study"].items():
            L.append(f"| {s} | {o['n_orders']} | {o['final_avg_mean']:.4f} | {o['final_avg_std']:.4f} | "
                     f"{o['final_avg_min']:.4f} | {o['final_avg_max']:.4f} |")
    L += ["", "## Accuracy matrices", ""]
    for r in res["runs"]:
        L += [f"### {tag}{r['strategy']}: {' → '.join(r['order'])}", "",
              "| after training on \\ tested on | " + " | ".join(r["order"]) + " |", "|---" * (len(r["order"]) + 1) + "|"]
        for s, row in zip(r["order"], r["R"]):
            L.append(f"| {s} | " + " | ".join(_f(v) for v in row) + " |")
        L.append("")
    mem = [(r["strategy"], n["site"], n["generator"]["memorisation"]) for r in res["runs"] for n in r["strategy_notes"]
           if isinstance(n.get("generator"), dict) and "memorisation" in n["generator"]]
    if mem:
        L += ["## Replay generator memorisation check", "",
              "RMS per-pixel distance of generated samples to the nearest training sample of the same site, next to the "
              "distance between distinct training samples. A ratio well below 1 would mean the generator reproduces "
              "training images.", "", "| strategy | site | gen→train median | gen→train min | train→train median | ratio |",
              "|---|---|---|---|---|---|"]
        for s, site, mm in mem:
            L.append(f"| {s} | {site} | {_f(mm['gen_to_train_median'])} | {_f(mm['gen_to_train_min'])} | "
                     f"{_f(mm['train_to_train_median'])} | {_f(mm['ratio_median'], 2)} |")
        L.append("")
    L += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()] + [""]
    return "\n".join(L)


def heatmap(R: Sequence[Sequence[float]], order: Sequence[str], path: str | Path, *, title: str = "",
            higher_is_better: bool = True) -> Path:
    """Write the accuracy matrix as a PNG heatmap (OpenCV; colour = value, number printed in each cell)."""
    import cv2

    from medzoo.io import atomic_path

    a = np.asarray(R, dtype=float)
    T = a.shape[0]
    cw, ch, left, top = 110, 56, 150, 80
    img = np.full((top + ch * T + 40, left + cw * T + 20, 3), 255, np.uint8)
    lo, hi = np.nanmin(a), np.nanmax(a)
    norm = (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)
    if not higher_is_better:
        norm = 1 - norm
    colours = cv2.applyColorMap((norm * 255).clip(0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(T):
        for j in range(T):
            x0, y0 = left + j * cw, top + i * ch
            c = tuple(int(v) for v in colours[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cw - 2, y0 + ch - 2), c, -1)
            lum = 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]
            cv2.putText(img, f"{a[i, j]:.3f}", (x0 + 22, y0 + ch // 2 + 6), font, 0.55,
                        (0, 0, 0) if lum > 128 else (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(img, f"after {order[i]}"[:18], (6, top + i * ch + ch // 2 + 6), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for j in range(T):
        cv2.putText(img, str(order[j])[:12], (left + j * cw + 8, top - 10), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title[:70], (6, 24), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: after training on; columns: tested on", (6, 48), font, 0.42, (80, 80, 80), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    p = Path(path)
    with atomic_path(p) as tmp:
        tmp.write_bytes(buf.tobytes())
    return p


def write_all(res: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Write ``relay_report.md`` and one heatmap per strategy (its first order) under ``out``."""
    from medzoo.io import atomic_write_bytes

    out = Path(out)
    tag = "SYNTHETIC " if res["synthetic"] else ""
    written = [atomic_write_bytes(out / "relay_report.md", markdown(res).encode())]
    seen = set()
    for r in res["runs"]:
        if r["strategy"] in seen:
            continue
        seen.add(r["strategy"])
        written.append(heatmap(r["R"], r["order"], out / f"R_{r['strategy']}.png",
                               title=f"{tag}{res['task']} {r['strategy']}: {res['primary_metric']}",
                               higher_is_better=res["higher_is_better"]))
    return written
