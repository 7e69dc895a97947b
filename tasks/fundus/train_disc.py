"""Recipe of the shipped ``fundus-disc`` weights (one command, CPU):

    python tasks/fundus/train_disc.py --out weights/

Trains the optic disc/cup U-Net (MobileNetV3-Large encoder, light decoder, 3 input channels, 2 sigmoid outputs:
disc incl. cup, cup) on the 50 official Drishti-GS1 training images through medzoo's one training loop
(``medzoo.relay.trainer.train_site``): images resized to a longer side of 384 px, CLAHE on LAB-L, 352x384 crops
with flips/scale/rotation/photometric jitter; targets are the majority-of-4-experts masks (soft map >= 128);
Dice+BCE loss; AdamW, warm-up + cosine. Then saves fp16 safetensors, measures the saved file on the 51 official
test images and writes the model card ``<out>/fundus-disc.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import DATA_TERMS, build_net, command_line, recipe_args, ship, train

import torch

from medzoo.core import load_model
from medzoo.relay.trainer import TrainConfig


def evaluate_file(path: Path) -> dict[str, dict[str, float]]:
    model = load_model(path)
    res = model.task.evaluate(model.net, model.task.build_dataset("drishti", "test"))
    return {"drishti-test": {k: round(v, 4) for k, v in res.metrics.items()} | {"n": len(res.ids)}}


def main(argv: list[str] | None = None) -> int:
    ap = recipe_args(__doc__, name="fundus-disc", epochs=60, batch_size=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    task, net = build_net("fundus-disc", args.init)
    ds = task.build_dataset("drishti", "train", augment=True)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=1e-4,
                      warmup_steps=30, min_lr_ratio=0.02, seed=args.seed,
                      extra={"crop": [352, 384], "longer_side": 384, "loss": "dice+bce",
                             "init": str(args.init) if args.init else None})
    print(f"training on {len(ds)} images/epoch for {args.epochs} epochs", flush=True)
    stats = train(task, net, ds, cfg, site="drishti", ckpt=args.ckpt, log=args.log)

    card = {
        "input": {"channels": "RGB", "dtype": "uint8", "shape": "H x W x 3", "network_input": "3 channels, CLAHE on LAB-L, in [0, 1]",
                  "scale": "resized to a longer side of 384 px (aspect kept), padded to a multiple of 32",
                  "field": "disc-centred photographs (Drishti-GS1-like, ~30 deg FOV)"},
        "preprocessing": ("resize (area) to a longer side of 384 px; CLAHE (clip 2.0, 8x8) on the L channel of CIE-LAB; "
                          "RGB scaled to [0, 1]; zero-padded to a multiple of 32; sigmoid; probabilities resized "
                          "back to the input size; threshold 0.5; disc = largest component of (disc or cup); "
                          "cup = largest component of cup inside the disc."),
        "classes": ["background", "disc (outside cup)", "cup"],
        "training_data": ("Drishti-GS1 official training split (50 images, stored downscaled x4, ~512x438); targets: "
                          "soft maps >= 128, i.e. marked by at least 2 of 4 experts (the disc includes the cup)"),
        "sites": ["drishti"],
        "metrics_command": command_line() + "  (re-measured by: python tasks/fundus/benchmark.py)",
        "recipe": "python tasks/fundus/train_disc.py --out weights/",
        "intended_use": ("Research and teaching: optic disc/cup outlines and vertical cup-to-disc ratio on disc-centred "
                         "colour fundus photographs. Not a medical device; not for glaucoma diagnosis or screening."),
        "license": "weights: MIT-style research release; the training data's terms below still apply",
        "data_terms": DATA_TERMS["drishti"] + " Research use only.",
        "summary": ("Optic disc and cup segmentation U-Net (timm MobileNetV3-Large encoder, random init) trained on "
                    "real Drishti-GS1 training images on CPU; metrics are on the official 51-image test split."),
        "extra": {"threshold": 0.5, "gt_threshold": 128,
                  "vcdr_definition": "cup height / disc height in pixel rows of the label map",
                  "vcdr_abs_err": "vs the vCDR of the majority masks; vcdr_abs_err_experts: vs the mean of the 4 experts' CDR values"},
    }
    meta = ship(task, net, args.out, name="fundus-disc", card=card, evaluate=evaluate_file, stats=stats, cfg=cfg)
    print(meta.metrics, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
