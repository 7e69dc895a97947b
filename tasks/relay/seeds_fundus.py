"""Seed study of the fundus relay comparison: the same phase-1 comparison at other seeds, summarised.

Each seed is one run of the benchmark (other initial weights, patch draws and training order of samples; same
sites, budget and test images)::

    python tasks/relay/benchmark_fundus.py --preset reduced --seed 1 --skip-orders \\
        --strategies naive,lwf,relay --baselines pooled,single --name relay_fundus_seed1 --out runs/seeds/s1

This script reads ``docs/benchmarks/relay_fundus.json`` (seed 0) and every ``relay_fundus_seed<N>.json`` beside it
and writes ``docs/benchmarks/relay_fundus_seeds.{json,md}`` (``--name relay_fundus_full``: the same for the ``full``
preset's ``relay_fundus_full.json`` and ``relay_fundus_full_seed<N>.json``): per seed and strategy the final mean Dice, BWT, the
gap to pooled training and whether the model beats every single-site model on the sites that model never saw;
then mean and standard deviation over seeds with a 95 % confidence interval of the mean (Student t, n - 1 degrees of
freedom: the seeds are a small sample, and a mean gap of 0.009 can still hide a true gap above 0.01), and the gap split per site into slower learning (pooled minus the
relay's model right after training on that site) and forgetting (right after minus final). A strategy that ran at
only some of the seeds is summarised over those seeds (its own n); one that ran at a single seed is listed, not
summarised. Where naive fine-tuning ran at a seed, each other strategy's BWT is compared with naive's at that seed.

Seeds whose methods ran in several calls (e.g. naive and the single-site models in one, LwF with another setting
in a later one that took the same seed's pooled model over): name the files with ``--files`` and the summary with
``--out-name``; files of the same seed are merged (same initial weights required; a baseline in two files must have
the same score), and ``--opt STRATEGY.KEY=VALUE`` keeps only that strategy's runs with that setting::

    python tasks/relay/seeds_fundus.py --out-name relay_fundus_full_image_cpu_lwf_both \
        --files relay_fundus_full_image_cpu_seed3 relay_fundus_full_image_cpu_seed3_lwf_both ... \
        --opt lwf.distill_inputs=both
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))
from medzoo.relay.strategies import parse_strategy_opts, strategy_defaults  # noqa: E402

SITES = ["drive", "stare", "hrf"]


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """One seed's numbers: pooled, and per strategy (given order) final mean, BWT, gap, unseen-site check."""
    res = doc["results"]
    base = res["baselines"]
    pooled = base["pooled"]["final_avg"]
    singles = {k.split(":", 1)[1]: v["row"] for k, v in base.items() if k.startswith("single:")}
    out: dict[str, Any] = {"seed": res["seed"], "pooled": pooled,
                           "single": {s: base[f"single:{s}"]["final_avg"] for s in singles}, "strategies": {}}
    prow = base["pooled"]["row"]
    for r in res["runs"]:
        if r["order"] != SITES:
            continue
        R, last = r["R"], len(SITES) - 1
        # per site j: pooled - final = (pooled - right after training on j) + (right after j - final)
        per_site = {t: {"gap": prow[t] - R[last][j], "pooled_minus_right_after": prow[t] - R[j][j],
                        "right_after_minus_final": R[j][j] - R[last][j]} for j, t in enumerate(SITES)}
        pairs = {f"{s}->{t}": r["final_row"][t] > row[t] for s, row in singles.items() for t in SITES if t != s}
        out["strategies"][r["strategy"]] = {
            "settings": r["settings"], "final_avg": r["final_avg"], "bwt": r["bwt"], "gap_to_pooled": pooled - r["final_avg"],
            "beats_single_on_unseen": all(pairs.values()) if pairs else None,
            "unseen_pairs_lost": sorted(k for k, v in pairs.items() if not v), "final_row": r["final_row"],
            "per_site": per_site}
    return out


def _setting_matches(have: Any, want: str) -> bool:
    """Whether a recorded setting equals a command-line value (numbers compared as numbers)."""
    try:
        return float(have) == float(want)
    except (TypeError, ValueError):
        return str(have) == want


def merge_seed(docs: list[tuple[str, dict[str, Any]]], opts: dict[str, dict[str, str]]) -> dict[str, Any]:
    """One seed's benchmark files merged into one: baselines united, runs kept where they match ``opts``.

    Raises:
        ValueError: the files started from different initial weights, give one baseline different scores, or
            leave two runs of a strategy in the same order (name a setting with ``opts`` to choose).
    """
    names = [n for n, _ in docs]
    inits = {d["results"].get("init_sha256") for _, d in docs} - {None}
    if len(inits) > 1:
        raise ValueError(f"{', '.join(names)}: same seed but different initial weights")
    base: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for name, d in docs:
        for k, v in d["results"]["baselines"].items():
            if k in base and abs(base[k]["final_avg"] - v["final_avg"]) > 1e-12:
                raise ValueError(f"{name}: baseline {k} scores {v['final_avg']} here and {base[k]['final_avg']} in an "
                                 "earlier file of the same seed")
            base.setdefault(k, v)
        runs += [r for r in d["results"]["runs"]
                 if all(_setting_matches(r["settings"].get(k), v) for k, v in opts.get(r["strategy"], {}).items())]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for r in runs:
        key = (r["strategy"], tuple(r["order"]))
        if key in seen:
            raise ValueError(f"{', '.join(names)}: more than one {r['strategy']} run in the order {'->'.join(r['order'])}"
                             f" (choose one with --opt {r['strategy']}.KEY=VALUE)")
        seen.add(key)
    first = docs[0][1]
    return {**first, "results": {**first["results"], "baselines": base, "runs": runs}}


def mean_ci95(values: list[float]) -> list[float]:
    """95 % confidence interval of the mean of ``values`` (Student t with n - 1 degrees of freedom).

    Example:
        >>> [round(v, 3) for v in mean_ci95([0.01, 0.03])]
        [-0.107, 0.147]
    """
    from scipy.stats import t  # scipy comes with albumentations; imported here so --help stays light

    n = len(values)
    m, se = statistics.fmean(values), statistics.stdev(values) / n ** 0.5
    half = float(t.ppf(0.975, n - 1)) * se
    return [m - half, m + half]


def measured_images_sentence(budget: dict[str, Any]) -> str:
    """Which test images a seed measures on: all of them, or (under the budget's ``max_test`` cap) a fixed random
    subset the seed draws (:func:`medzoo.relay.api.subset`); nothing when the budget does not say."""
    if "max_test" not in budget:
        return ""
    max_test = budget["max_test"]
    if max_test is None:
        return "the test images are the same at every seed (every test image)."
    return (f"the seed also draws which test images are measured: a fixed random subset of {max_test} per site (all "
            "of a site's test images where it has no more); within a seed every method is measured on the same images.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench-dir", default=str(ROOT / "docs" / "benchmarks"))
    ap.add_argument("--name", default="relay_fundus", help="the seed-0 publication's name (relay_fundus_full: full preset)")
    ap.add_argument("--files", nargs="+", default=None, metavar="NAME",
                    help="benchmark files (names in --bench-dir, with or without .json) instead of <name>[_seed<N>]; "
                         "files of the same seed are merged")
    ap.add_argument("--out-name", default=None, help="the summary's name with --files (written as <out-name>_seeds)")
    ap.add_argument("--opt", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
                    help="keep only the runs of STRATEGY with this setting (repeatable)")
    args = ap.parse_args()
    bdir, name0 = Path(args.bench_dir), args.name
    if args.files:
        if not args.out_name:
            print("--files needs --out-name", file=sys.stderr)
            return 2
        name0 = args.out_name
        files = [bdir / (f if f.endswith(".json") else f + ".json") for f in args.files]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            print(f"no such benchmark file: {', '.join(missing)}", file=sys.stderr)
            return 2
    else:
        # only <name0>_seed<N>.json: not the summary (_seeds) nor an ablation run at another seed (_seed1_ablation_...)
        seed_files = [p for p in bdir.glob(f"{name0}_seed*.json") if re.fullmatch(re.escape(name0) + r"_seed\d+", p.stem)]
        files = [bdir / f"{name0}.json"] + sorted(seed_files, key=lambda p: int(p.stem[len(name0) + 5:]))
        files = [f for f in files if f.is_file()]
    try:
        opts = parse_strategy_opts(args.opt)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    by_seed: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for f in files:
        d = json.loads(f.read_text())
        by_seed.setdefault(d["results"]["seed"], []).append((f.name, d))
    if len(by_seed) < 2:
        print(f"need at least two seeds: {name0}.json and at least one {name0}_seed<N>.json in {bdir}, or --files",
              file=sys.stderr)
        return 2
    presets = {json.loads(f.read_text()).get("preset", "reduced") for f in files}
    try:
        seeds = [summarise(merge_seed(docs, opts)) for docs in by_seed.values()]
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    from medzoo.relay.takeover import BUDGET_DEFAULTS  # fields added later, as files written before them meant

    budgets = {json.dumps({**BUDGET_DEFAULTS, **json.loads(f.read_text())["results"]["budget"]}, sort_keys=True)
               for f in files}
    if len(budgets) != 1:
        print(f"the files were run at different budgets: {sorted(budgets)}", file=sys.stderr)
        return 2
    names = sorted({name for s in seeds for name in s["strategies"]})
    ran = {name: [s for s in seeds if name in s["strategies"]] for name in names}
    common = sorted(name for name, at in ran.items() if len(at) >= 2)  # summarised over the seeds that ran them
    for s in seeds:  # less forgetting than naive fine-tuning at the same seed, where naive ran there
        naive = s["strategies"].get("naive")
        for name, r in s["strategies"].items():
            r["forgets_less_than_naive"] = None if naive is None or name == "naive" else r["bwt"] > naive["bwt"]
    for name in common:
        if len({json.dumps({**strategy_defaults(name), **s["strategies"][name]["settings"]}, sort_keys=True)
                for s in ran[name]}) != 1:  # an older file lacks settings added since: they ran at the defaults
            print(f"strategy {name!r} ran with different settings in different seeds", file=sys.stderr)
            return 2
    agg: dict[str, Any] = {}
    for name in common:
        rows = [s["strategies"][name] for s in ran[name]]
        agg[name] = {"n_seeds": len(rows), "seeds": [s["seed"] for s in ran[name]]}
        agg[name] |= {k: {"mean": statistics.fmean(r[k] for r in rows), "std": statistics.stdev(r[k] for r in rows),
                         "ci95_of_mean": mean_ci95([r[k] for r in rows])}
                     for k in ("final_avg", "bwt", "gap_to_pooled")}
        vs_single = [r["beats_single_on_unseen"] for r in rows if r["beats_single_on_unseen"] is not None]
        agg[name]["beats_single_on_unseen"] = sum(vs_single)  # seeds beating them, of the seeds where they ran
        agg[name]["beats_single_of"] = len(vs_single)
        agg[name]["bwt_at_least_-0.01"] = sum(r["bwt"] >= -0.01 for r in rows)
        agg[name]["within_0.01_of_pooled"] = sum(r["gap_to_pooled"] <= 0.01 + 1e-9 for r in rows)
        vs_naive = [r["forgets_less_than_naive"] for r in rows if r["forgets_less_than_naive"] is not None]
        agg[name]["forgets_less_than_naive"] = {"seeds": sum(vs_naive), "of": len(vs_naive)}
        agg[name]["per_site"] = {t: {k: {"mean": statistics.fmean(r["per_site"][t][k] for r in rows),
                                         "std": statistics.stdev(r["per_site"][t][k] for r in rows)}
                                     for k in ("gap", "pooled_minus_right_after", "right_after_minus_final")}
                                 for t in SITES}
    pooled = [s["pooled"] for s in seeds]
    agg["pooled"] = {"final_avg": {"mean": statistics.fmean(pooled), "std": statistics.stdev(pooled)}}
    cmd = "python tasks/relay/seeds_fundus.py" + (
        f" --out-name {name0} --files {' '.join(f.stem for f in files)}" + "".join(f" --opt {o}" for o in args.opt)
        if args.files else (f" --name {name0}" if name0 != "relay_fundus" else "") + "".join(f" --opt {o}" for o in args.opt))
    out = {"benchmark": f"{name0}_seeds", "synthetic": False, "command": cmd, "preset": "/".join(sorted(presets)),
           "sources": [f.name for f in files], "budget": json.loads(next(iter(budgets))), "per_seed": seeds, "over_seeds": agg,
           "n_seeds": len(seeds)}
    (bdir / f"{name0}_seeds.json").write_text(json.dumps(out, indent=2) + "\n")

    L = [f"<!-- generated by {cmd} -->", "",
         "# Fundus relay comparison over seeds (real data: DRIVE -> STARE -> HRF)", "",
         f"Sources: {', '.join(out['sources'])}; budget `{out['budget']}` (the `{out['preset']}` preset); a seed sets the initial "
         "weights, the training patches drawn and their order; " + measured_images_sentence(out["budget"]) +
         " Final mean Dice over the "
         "three sites' test images after the last site; BWT (Lopez-Paz & Ranzato) in Dice; gap = pooled - strategy. "
         "'beats single' = above every single-site model on the sites that model never saw.", "",
         "| seed | pooled | strategy | final mean | gap to pooled | BWT | forgets less than naive | beats single (pairs lost) |",
         "|---|---|---|---|---|---|---|---|"]
    yes_no = {True: "yes", False: "no", None: "–"}
    for s in seeds:
        for name in sorted(s["strategies"]):
            r = s["strategies"][name]
            lost = ", ".join(r["unseen_pairs_lost"]) or "-"
            L.append(f"| {s['seed']} | {s['pooled']:.4f} | {name} | {r['final_avg']:.4f} | {r['gap_to_pooled']:.4f} | "
                     f"{r['bwt']:.4f} | {yes_no[r['forgets_less_than_naive']]} | "
                     + (f"{yes_no[r['beats_single_on_unseen']]} ({lost}) |" if r["beats_single_on_unseen"] is not None
                        else "– (no single-site models at this seed) |"))
    n = len(seeds)
    L += ["", f"## Over the seeds each method ran (mean ± sample std; pooled: all {n} seeds)", "",
          "| method | seeds | final mean | gap to pooled | BWT | beats single (seeds where they ran) | BWT >= -0.01 | within 0.01 of pooled | "
          "forgets less than naive (seeds where naive ran) |",
          "|---|---|---|---|---|---|---|---|---|",
          f"| pooled | {n} | {agg['pooled']['final_avg']['mean']:.4f} ± {agg['pooled']['final_avg']['std']:.4f} | – | – | – | – | – | – |"]
    for name in common:
        a = agg[name]
        k, vn = a["n_seeds"], a["forgets_less_than_naive"]
        L.append(f"| {name} | {k} | {a['final_avg']['mean']:.4f} ± {a['final_avg']['std']:.4f} | {a['gap_to_pooled']['mean']:.4f} ± "
                 f"{a['gap_to_pooled']['std']:.4f} | {a['bwt']['mean']:.4f} ± {a['bwt']['std']:.4f} | "
                 f"{a['beats_single_on_unseen']}/{a['beats_single_of']} | {a['bwt_at_least_-0.01']}/{k} | {a['within_0.01_of_pooled']}/{k} | "
                 + (f"{vn['seeds']}/{vn['of']} |" if vn["of"] else "– |"))
    L += ["", "95 % confidence interval of the mean over the seeds (Student t, n - 1 degrees of freedom; how far the "
          "mean of these seeds may be from the mean over all seeds):", ""]
    for name in common:
        a = agg[name]
        L.append(f"- {name} ({a['n_seeds']} seeds): gap to pooled [{a['gap_to_pooled']['ci95_of_mean'][0]:.4f}, {a['gap_to_pooled']['ci95_of_mean'][1]:.4f}]"
                 f", BWT [{a['bwt']['ci95_of_mean'][0]:.4f}, {a['bwt']['ci95_of_mean'][1]:.4f}], final mean "
                 f"[{a['final_avg']['ci95_of_mean'][0]:.4f}, {a['final_avg']['ci95_of_mean'][1]:.4f}]")
    L += ["", "## Where the gap to pooled training comes from, per site (mean ± sample std over seeds)", "",
          ("For each site j: pooled - final = (pooled - the relay's model right after training on j: slower learning) + "
           "(right after j - final: forgetting, the per-site term of BWT with the sign flipped). Positive = below "
           "pooled training. The last site's forgetting is 0 by definition."), "",
          "| strategy | site | pooled - final | pooled - right after | right after - final |", "|---|---|---|---|---|"]
    for name in common:
        for t in SITES:
            ps = agg[name]["per_site"][t]
            L.append(f"| {name} | {t} | " + " | ".join(f"{ps[k]['mean']:+.4f} ± {ps[k]['std']:.4f}" for k in
                                                      ("gap", "pooled_minus_right_after", "right_after_minus_final")) + " |")
    settings = {name: {**strategy_defaults(name), **ran[name][-1]["strategies"][name]["settings"]} for name in common}
    L += ["", "Strategy settings: " + "; ".join(f"`{k}` {json.dumps(v)}" for k, v in settings.items()), ""]
    (bdir / f"{name0}_seeds.md").write_text("\n".join(L))
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
