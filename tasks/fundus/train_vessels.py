"""Recipe of the shipped ``fundus-vessels`` weights (one command, CPU):

    python tasks/fundus/train_vessels.py --out <scratch dir>     # or --overwrite to replace weights/fundus-vessels.*

Trains the vessel U-Net (MobileNetV3-Large encoder, light decoder) on the training splits of DRIVE (20 images),
STARE (10) and HRF (15), jointly, through medzoo's one training loop (``medzoo.relay.trainer.train_site``), on
random FOV-centred 256 px patches of the CLAHE green channel with flips/rotations/scale/photometric jitter, Dice+BCE
loss, AdamW with linear warm-up and cosine decay. Then saves fp16 safetensors, measures the saved file on the DRIVE,
STARE and HRF test splits and writes the model card ``<out>/fundus-vessels.json``. A checkpoint is saved after
every epoch (``--ckpt``); ``--init CKPT`` starts from one (a warm restart with a fresh schedule). An interrupted
run resumes exactly when the same command is run again (full checkpoint in ``--resume-dir``).

Budget: 40 epochs of ~61 steps (batch 8) take about 47 minutes on a 2-core CPU (about 70 s per epoch measured on
the idle machine), inside the 60-minute CPU budget the fundus issue sets for this recipe.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import DATA_TERMS, build_net, command_line, recipe_args, refuse_existing, ship, train

import torch
from torch.utils.data import ConcatDataset

from medzoo.core import load_model
from medzoo.relay.trainer import TrainConfig

SITES = ("drive", "stare", "hrf")
PATCHES_PER_IMAGE = {"drive": 8, "stare": 16, "hrf": 11}  # about 160 patches per site and epoch


def evaluate_file(path: Path) -> dict[str, dict[str, float]]:
    model = load_model(path)
    out = {}
    for site in SITES:
        res = model.task.evaluate(model.net, model.task.build_dataset(site, "test"))
        out[f"{site}-test"] = {k: round(v, 4) for k, v in res.metrics.items()} | {"n": len(res.ids)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = recipe_args(__doc__, name="fundus-vessels", epochs=40, batch_size=8)
    args = ap.parse_args(argv)
    refuse_existing(args.out, "fundus-vessels", args.overwrite)  # before training, not after it
    torch.set_num_threads(args.threads)

    task, net = build_net("fundus-vessels", args.init, args.seed)
    print(f"loading and preprocessing the training images of {', '.join(SITES)} (about 2 min on a 2-core CPU) ...",
          flush=True)
    ds = ConcatDataset([task.build_dataset(s, "train", augment=True, patches_per_image=PATCHES_PER_IMAGE[s])  # type: ignore[call-arg]
                        for s in SITES])
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=1e-4,
                      warmup_steps=100, min_lr_ratio=0.02, seed=args.seed,
                      extra={"patch": 256, "patches_per_image": PATCHES_PER_IMAGE, "loss": "dice+bce",
                             "init": str(args.init) if args.init else None})
    print(f"training on {len(ds)} patches/epoch for {args.epochs} epochs", flush=True)
    stats = train(task, net, ds, cfg, site="+".join(SITES), ckpt=args.ckpt, log=args.log, resume_dir=args.resume_dir)

    card = {
        "input": {"channels": "RGB", "dtype": "uint8", "shape": "H x W x 3", "network_input": "1 channel, CLAHE green in [0, 1]",
                  "scale": "as given if the longer side <= 1000 px, else reduced to 876 px (training scale of HRF)",
                  "pad_multiple": 32},
        "preprocessing": ("FOV derived from the red channel (threshold 20, median 5, open/close 15 px, largest "
                          "component, holes filled); green channel with CLAHE (clip 2.0, tiles 8x8) scaled to "
                          "[0, 1], 0 outside the FOV; zero-padded to a multiple of 32; sigmoid; cropped back; "
                          "0 outside the FOV; resized to the input size; threshold 0.5."),
        "classes": ["vessel"],
        "training_data": ("DRIVE train (official, 20 images: 21-40), STARE train (split.csv split_maninis2016, "
                          "10 images), HRF train (first 5 ids of each category, 15 images, stored 876x584); "
                          "joint training, ~160 random 256 px patches per set and epoch"),
        "sites": list(SITES),
        "metrics_command": command_line() + "  (re-measured by: python tasks/fundus/benchmark.py)",
        "recipe": command_line(),
        "intended_use": ("Research and teaching: retinal vessel maps of colour fundus photographs (35-45 deg FOV, "
                         "about 500-900 px across the FOV). Not a medical device; not for diagnosis or screening."),
        "license": "weights: MIT-style research release; the training data's terms below still apply",
        "data_terms": " ".join(DATA_TERMS[s] for s in SITES) + " Research use only.",
        "summary": ("Retinal vessel segmentation U-Net (timm MobileNetV3-Large encoder, random init, light decoder) "
                    "trained on real DRIVE + STARE + HRF training images on CPU; metrics are on their held-out test splits."),
        "extra": {"threshold": 0.5, "fov_red_threshold": 20,
                  "hrf_split": "train = ids 01-05 of each category (15), test = the other 27 with vessel GT",
                  "stare_split": "split.csv split_maninis2016 (10 train / 8 test; im0235, im0236 missing)"},
    }
    meta = ship(task, net, args.out, name="fundus-vessels", card=card, evaluate=evaluate_file, stats=stats, cfg=cfg, overwrite=args.overwrite)
    print(meta.metrics, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
