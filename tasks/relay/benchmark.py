"""Relay-versus-baselines comparison on the built-in SYNTHETIC sites (no data download needed).

    python tasks/relay/benchmark.py                          # midline + mediastinum, tiny budget
    python tasks/relay/benchmark.py --task midline --budget small --orders all
    python tasks/relay/benchmark.py --fundus                 # also the real-data fundus comparison (long; see
                                                             # tasks/relay/benchmark_fundus.py)

Writes docs/benchmarks/relay_<task>.json and .md (``--publish-dir`` elsewhere): accuracy matrices, final average, BWT, forgetting, FWT,
external site, bootstrap CIs, and the baselines (single-site, pooled, cyclic weight transfer, FedAvg, ensemble).
Every number is labelled SYNTHETIC. Numbers are measured, never asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import ROOT, add_publish_dir, publish

SYNTHETIC = {"midline": (["synth-a", "synth-b", "synth-c"], ["synth-x"]),
             "mediastinum": (["synth-a", "synth-b", "synth-c"], ["synth-x"])}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=[*SYNTHETIC, "all"], default="all")
    ap.add_argument("--budget", choices=("tiny", "small", "full"), default="tiny")
    ap.add_argument("--orders", choices=("given", "all"), default="given")
    ap.add_argument("--strategy", default="all")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "relay-bench")
    ap.add_argument("--fundus", action="store_true",
                    help="also run tasks/relay/benchmark_fundus.py (its default reduced preset, same --publish-dir)")
    add_publish_dir(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import torch

    from medzoo.relay.simulate import simulate

    torch.set_num_threads(args.threads)
    for task in (SYNTHETIC if args.task == "all" else [args.task]):
        sites, external = SYNTHETIC[task]
        out = args.out / task
        res = simulate(task, sites, out, strategies="all" if args.strategy == "all" else args.strategy.split(","),
                       orders=args.orders, budget=args.budget, external=external, epochs=args.epochs)
        j, m = publish(f"relay_{task}", res, out, extra={"budget_name": args.budget}, bench_dir=args.publish_dir)
        print(f"wrote {j} and {m}")
    if args.fundus:
        return subprocess.call([sys.executable, str(Path(__file__).with_name("benchmark_fundus.py")),
                                "--publish-dir", str(args.publish_dir)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
