"""Recipe: reproduce the shipped ``weights/midline.*`` (SYNTHETIC data only) with one command.

    nice -n 10 python tasks/midline/train.py --overwrite      # replaces the shipped weights/midline.*

A relay across the built-in SYNTHETIC sites synth-a -> synth-b -> synth-c -> synth-d through the deployment
API (``medzoo.relay.api``: start, train at each site, export), with Learning-without-Forgetting so that each
site's training does not erase the previous ones. The unseen site synth-x and the CQ500-template warp set are
never trained on (the template's licence is non-commercial; see docs/midline.md). The model card records the
held-out test metrics of every synthetic site, measured here on their test splits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SITES = ("synth-a", "synth-b", "synth-c", "synth-d")
WORK_MARKER = ".medzoo-midline-work"  # written into --work when this recipe takes the folder: says it is medzoo's


def _is_own_file(name: str) -> bool:
    """A name this recipe (or the relay API it calls) writes into --work: batons, the exported relay model,
    per-site checkpoint folders ``.<site>.baton.work``, atomic temporaries ``.<name>.<random>.part``, the marker."""
    return (name in (WORK_MARKER, "relay.safetensors") or name.endswith(".baton")
            or (name.startswith(".") and name.endswith((".baton.work", ".part"))))


def prepare_work(work: Path, *, reuse: bool) -> None:
    """Make ``work`` this recipe's folder, before any training. Never deletes anything medzoo did not write.

    A new or empty folder is taken (and marked). A folder with the marker is medzoo's: without ``reuse`` only
    medzoo's own files in it are removed (anything else stays). A non-empty folder without the marker is refused.
    """
    from medzoo.errors import InputError

    if work.exists() and not work.is_dir():
        raise InputError("--work is a file, not a folder", work)
    if work.is_dir() and any(work.iterdir()) and not (work / WORK_MARKER).exists():
        shown = ", ".join(sorted(p.name for p in work.iterdir())[:3])
        raise InputError(f"--work holds files ({shown}, ...) but no {WORK_MARKER} marker, so it is not a work folder "
                         "this recipe made; nothing was deleted. Give a new or empty folder", work)
    work.mkdir(parents=True, exist_ok=True)
    if not reuse:
        for p in work.iterdir():
            if p.name != WORK_MARKER and _is_own_file(p.name):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    (work / WORK_MARKER).write_text("work folder of tasks/midline/train.py; a rerun without --reuse removes only "
                                    "medzoo's batons, checkpoints and relay.safetensors here\n")


def per_site(values: list, sites: tuple[str, ...], flag: str) -> list:
    """One value for every site (a single value is repeated); any other count is refused."""
    from medzoo.errors import InputError

    if len(values) == 1:
        return values * len(sites)
    if len(values) != len(sites):
        raise InputError(f"{flag} takes one value or one per site ({len(sites)}: {' '.join(sites)}), got {len(values)}")
    return list(values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, nargs="+", default=None,
                    help="epochs at each site: one value, or one per site (default 12 at the first site, 8 after)")
    ap.add_argument("--lr", type=float, nargs="+", default=None,
                    help="learning rate at each site: one value, or one per site (default 1.5e-3 first, 1e-3 after)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--strategy", default="lwf")
    ap.add_argument("--max-samples", type=int, default=None, help="per-site training subset (default: whole site)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads (1 is fastest on a shared 2-core machine)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "midline")
    ap.add_argument("--out", type=Path, default=ROOT / "weights" / "midline.safetensors")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out model file and its card "
                    "(the default --out is the shipped weights/midline.safetensors)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sites", nargs="+", default=list(SITES), help="relay order (default: synth-a synth-b synth-c synth-d)")
    ap.add_argument("--reuse", action="store_true", help="keep --work and skip sites whose baton is already there "
                    "(continue an interrupted relay; the relay is sequential, so the result is the same)")
    ap.add_argument("--eval-n", type=int, default=None, help="evaluate on the first N test slices only (smoke runs)")
    args = ap.parse_args(argv)
    command = "python tasks/midline/train.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))

    from medzoo.errors import InputError

    sites = tuple(args.sites)
    try:
        epochs = per_site(args.epochs or [12] + [8] * (len(sites) - 1), sites, "--epochs")
        lrs = per_site(args.lr or [1.5e-3] + [1e-3] * (len(sites) - 1), sites, "--lr")
        card_path = args.out.parent / "midline.json"  # write_card names the card after the model name
        existing = [p for p in (args.out, card_path) if p.exists()]
        if existing and not args.overwrite:
            raise InputError(f"{' and '.join(map(str, existing))} already exist(s); pass --overwrite to replace "
                             "(the default --out is the shipped model) or give another --out")
        prepare_work(args.work, reuse=args.reuse)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import torch
    from torch.utils.data import Subset

    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from medzoo import get_task
    from medzoo.core import load_model
    from medzoo.io import sha256_file
    from medzoo.relay import api
    from medzoo.weights import WeightsMeta, write_card

    work = args.work
    t0, c0 = time.perf_counter(), time.process_time()
    baton = work / "start.baton"
    if not (args.reuse and baton.exists()):
        baton = api.start("midline", baton, strategy=args.strategy, overwrite=True, seed=args.seed)
    for site, ep, lr in zip(sites, epochs, lrs):
        ts = time.perf_counter()
        if args.reuse and (work / f"{site}.baton").exists():
            baton = work / f"{site}.baton"
            print(f"{site}: reusing {baton}", flush=True)
            continue
        baton = api.train(baton, site, site, work / f"{site}.baton", epochs=ep, batch_size=args.batch_size, lr=lr,
                          seed=args.seed, max_samples=args.max_samples, progress=False,
                          eval_split=None if args.eval_n else "test")
        print(f"[{time.perf_counter() - t0:7.0f}s] {site}: trained {ep} epochs in {time.perf_counter() - ts:.0f}s", flush=True)
    exported = api.export(baton, work / "relay.safetensors", overwrite=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ledger = api.inspect(baton)["ledger"]
    per_site_wall = {e["site"]: e.get("train_stats", {}).get("wall_s") for e in ledger if e.get("kind") == "train"}

    task = get_task("midline")
    tm = load_model(exported, expect_task="midline")
    metrics: dict[str, dict[str, float]] = {}
    for site in ("synth-x", *sites):          # the unseen site first: `medzoo list` shows the first entry
        test = task.build_dataset(site, "test")
        if args.eval_n:
            test = Subset(test, range(min(args.eval_n, len(test))))  # type: ignore[arg-type]
        res = task.evaluate(tm.net, test)
        metrics[f"{site} test (SYNTHETIC)"] = {k: round(v, 4) for k, v in res.metrics.items()}
        print(site, json.dumps(metrics[f"{site} test (SYNTHETIC)"]), flush=True)

    net = tm.net
    n_train = sum(min(len(task.build_dataset(s, "train")), args.max_samples or 10**9) for s in sites)
    relay_meta = tm.meta.get("relay", {})
    meta_common = {"name": "midline", "synthetic": True}
    path = task.wrap(net, {**tm.meta, **meta_common}).save(args.out, half=True)
    n_params = sum(p.numel() for p in net.parameters())
    arch = task.architecture(net)
    card = WeightsMeta(
        name="midline", task="midline", file=path.name, sha256=sha256_file(path), architecture=arch, num_params=n_params,
        input={"channels": "one axial head-CT slice in HU at the level of the lateral ventricles",
               "orientation": "radiological display: anterior at the top row, patient's right on the image left",
               "size": "any (resampled internally)", "spacing_mm": "any (a float or (row, col)); internal grid "
               f"{arch['size']} x {arch['size']} px at {arch['spacing_mm']} mm, centred on the head"},
        preprocessing="HU validated (refuses 0-255 images without window=), clipped to [-200, 1500], anti-aliased and "
                      "resampled to the internal grid centred on the head, two windows (0..80 HU, -100..1000 HU) scaled to "
                      "[0, 1]; soft-argmax (DSNT) decoding, averaged with the left-right mirrored image; points mapped back "
                      "to input pixels.",
        classes=list(task.spec.classes),
        training_data="SYNTHETIC procedurally generated axial head-CT slices (medzoo.tasks.midline.generator), "
                      f"train splits of {', '.join(sites)} ({n_train} slices"
                      f"{'' if args.max_samples is None else f', at most {args.max_samples} per site'}); "
                      "no patient data. synth-x and the CQ500-template warp set were never trained on.",
        sites=list(sites), metrics=metrics,
        metrics_command=f"{command} (held-out test splits{f', first {args.eval_n} slices' if args.eval_n else ''}, "
                        "measured after export); full benchmark: python tasks/midline/benchmark.py -> "
                        "docs/benchmarks/midline.md",
        recipe=command,
        intended_use="Research and teaching: a worked example of landmark regression trained by relay learning. Trained "
                     "on SYNTHETIC data only; not validated on patient scans; not for clinical decisions.",
        license="Apache-2.0", data_terms="SYNTHETIC data generated by medzoo (no third-party data).", synthetic=True,
        summary="SYNTHETIC-data midline model: finds the anterior falx attachment, septum pellucidum and posterior falx "
                "attachment on an axial head-CT slice and reports the midline shift in mm (positive toward the patient's "
                f"left). Relay-trained ({args.strategy}) across synthetic sites {', '.join(sites)} with medzoo.relay.api.",
        training_cost={"cpu_s_this_invocation": round(cpu, 1), "wall_s_this_invocation": round(wall, 1),
                       "train_wall_s_per_site (from the baton ledger)": per_site_wall, "reused_batons": bool(args.reuse),
                       "note": "wall times on a 2-core machine shared with other training jobs at nice 10",
                       "threads": args.threads, "device": "cpu",
                       "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs (shared)", "epochs": epochs, "lr": lrs,
                       "batch_size": args.batch_size},
        extra={"spacing_mm": arch["spacing_mm"], "grid_size": arch["size"], "strategy": args.strategy,
               "relay": relay_meta, "shift_threshold_mm": 5.0,
               "shift_sign": "positive toward the patient's left (image right)"},
    )
    write_card(card, args.out.parent)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its card; training cpu {cpu:.0f}s wall {wall:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
