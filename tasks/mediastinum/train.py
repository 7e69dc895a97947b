"""Recipe: reproduce weights/mediastinum.safetensors (+ its model card) with one command.

    nice -n 10 python tasks/mediastinum/train.py --out <scratch dir>      # or --overwrite to replace weights/

A relay over the SYNTHETIC sites synth-a -> synth-b -> synth-c through medzoo's relay API (the same baton files
a hospital relay passes on: start, train at each site on that site's data only, export), with the ``lwf``
strategy (learning without forgetting: distillation from the arriving model). ``--strategy relay`` runs the
relay strategy instead (distillation + sample-weighted merge; replay off). The exported model is saved in fp16
and measured on held-out test splits, including the unseen-acquisition site synth-x.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (sets sys.path for a source checkout)
from common import BATCH_SIZE, EPOCHS, LR, RELAY_OPTS, ROOT, SEED, STRATEGY, THREADS, TRAIN_SITES, UNSEEN_SITE, machine

from medzoo.io import command_line


OUT_FILES = ("mediastinum.safetensors", "mediastinum.json")


def existing_outputs(out: Path) -> list[Path]:
    """The weights file and card at ``out`` that a run would replace."""
    return [out / f for f in OUT_FILES if (out / f).exists()]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "weights",
                    help="folder for mediastinum.safetensors/.json (default: the repository's weights/, %(default)s; "
                         "an existing file there is refused unless --overwrite)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace mediastinum.safetensors/.json already at --out (e.g. the shipped weights)")
    ap.add_argument("--strategy", default=STRATEGY)
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per site")
    ap.add_argument("--sites", nargs="+", default=list(TRAIN_SITES))
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="strategy setting (repeatable); the relay strategy gets replay=False unless given")
    ap.add_argument("--work", type=Path, default=None, help="keep the batons here (default: a temporary folder)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    existing = existing_outputs(args.out)
    if existing and not args.overwrite:
        ap.error(f"{', '.join(map(str, existing))} already exist(s); pass --overwrite to replace, or another --out")
    command = command_line(argv)

    import torch

    from medzoo import get_task
    from medzoo.core import load_model
    from medzoo.io import sha256_file
    from medzoo.relay import api
    from medzoo.weights import WeightsMeta, write_card

    torch.set_num_threads(THREADS)
    task = get_task("mediastinum")
    work = args.work or Path(tempfile.mkdtemp(prefix="mediastinum-relay-"))
    work.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    opts = dict(RELAY_OPTS) if args.strategy == "relay" else {}
    opts.update(kv.split("=", 1) for kv in args.opt)
    baton = api.start("mediastinum", work / "0-start.baton", strategy=args.strategy, overwrite=True, seed=SEED, **opts)
    for i, site in enumerate(args.sites, start=1):
        print(f"[{time.perf_counter() - t0:6.0f}s] site {i}/{len(args.sites)}: {site} (SYNTHETIC)", flush=True)
        nxt = api.train(baton, site, site=site, out=work / f"{i}-{site}.baton", epochs=args.epochs,
                        batch_size=BATCH_SIZE, lr=LR, seed=SEED + i, progress=False, overwrite=True,
                        expect_task="mediastinum")
        assert nxt is not None
        baton = nxt
    info = api.inspect(baton)
    exported = api.export(baton, work / "relay.safetensors", overwrite=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    tm = load_model(exported, expect_task="mediastinum")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "mediastinum.safetensors"
    tm.save(out, half=True)
    fp16 = load_model(out, expect_task="mediastinum")  # measure what ships (fp16 weights)
    metrics: dict[str, dict[str, float]] = {}
    keep = ("auroc_macro", "balanced_accuracy", "accuracy")
    for site in (UNSEEN_SITE, *args.sites):
        ds = task.build_dataset(site, "test")
        res = task.evaluate(fp16.net, ds)
        label = f"{site} test (SYNTHETIC, n={len(ds)}{', unseen acquisition' if site == UNSEEN_SITE else ''})"  # type: ignore[arg-type]
        metrics[label] = {k: round(res.metrics[k], 4) for k in keep}
        print(f"  {label}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics[label].items()), flush=True)

    net = fp16.net
    arch = task.architecture(net)
    ledger = [{k: e.get(k) for k in ("kind", "site", "n_samples", "epochs", "train_stats")} for e in info["ledger"]
              if e.get("kind") == "train"]
    meta = WeightsMeta(
        name="mediastinum", task="mediastinum", file=out.name, sha256=sha256_file(out), architecture=arch,
        num_params=sum(p.numel() for p in net.parameters()),
        input={"volume": "(D, H, W) float, Hounsfield units; axis 0 inferior->superior, anterior at the top row, "
                         "patient's right on the image's left", "spacing_mm": "(z, y, x), required (read from "
                         "NIfTI/DICOM headers by predict_path)", "lesion": "bbox (z0, y0, x0, z1, y1, x1) voxel "
                         "indices, half-open, or a mask", "network": f"{task.spec.in_chans} x 64 x 64 in [0, 1]"},
        preprocessing="Crop centred on the lesion box: 3 axial planes (box centre and +/-6 mm, linear "
                      "interpolation) resampled to 2 mm pixels, 64 x 64 (128 mm field); each plane through 3 HU "
                      "windows (mediastinal L40/W400, lung L-600/W1500, bone L400/W1800) -> 9 channels in [0, 1].",
        classes=list(task.spec.classes),
        training_data=f"SYNTHETIC procedurally generated chest-CT-like volumes (medzoo generator), train splits of "
                      f"{', '.join(args.sites)} ({info['n_seen']} cases); no patient data.",
        sites=list(info["sites"]),
        metrics=metrics,
        metrics_command=f"{command} (measures the fp16 file after export); "
                        "or: medzoo evaluate mediastinum --data synth-x",
        recipe=command,
        intended_use="Demonstration and research on relay learning with SYNTHETIC data. Not a medical device; "
                     "never validated on patient CT; must not be used for diagnosis.",
        license="Apache-2.0", data_terms="SYNTHETIC data generated by medzoo itself; no patient data, no terms.",
        synthetic=True,
        summary=(f"SYNTHETIC: mediastinal mass classifier (thymoma, lymphoma, teratoma, neurogenic tumour, cyst) on "
                 f"chest-CT-like volumes, relay-trained ({args.strategy} strategy) across {len(args.sites)} synthetic "
                 f"sites ({' -> '.join(args.sites)}), {args.epochs} epochs each, {task.spec.in_chans}-channel 2.5D "
                 f"crops, timm {arch['backbone']} from scratch. Trained and measured on synthetic data only."),
        training_cost={"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "machine": machine(), "threads": THREADS,
                       "note": "shared CPU (other jobs ran at the same time); run with nice -n 10"},
        extra={"strategy": args.strategy, "strategy_settings": info["strategy_settings"], "n_train": info["n_seen"],
               "epochs_per_site": args.epochs, "batch_size": BATCH_SIZE, "lr": LR, "seed": SEED,
               "baton_sha256": info["content_sha256"], "ledger": ledger},
    )
    card = write_card(meta, args.out)
    print(f"wrote {out} and {card} (SYNTHETIC) in {wall:.0f}s wall / {cpu:.0f}s CPU", flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
