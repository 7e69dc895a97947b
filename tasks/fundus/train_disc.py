"""Recipe of the shipped ``fundus-disc`` weights (one command, CPU):

    python tasks/fundus/train_disc.py --out <scratch dir>     # or --overwrite to replace weights/fundus-disc.*

Trains the optic disc/cup U-Net (MobileNetV3-Large encoder, light decoder, 3 input channels, 2 sigmoid outputs:
disc incl. cup, cup) on the 50 official Drishti-GS1 training images through medzoo's one training loop
(``medzoo.relay.trainer.train_site``): images resized to a longer side of 384 px, CLAHE on LAB-L, 352x384 crops
with flips/scale/rotation/photometric jitter; targets are the majority-of-4-experts masks (soft map >= 128);
Dice+BCE loss; AdamW, warm-up + cosine. Then saves fp16 safetensors, measures the saved file on the 51 official
test images and writes the model card ``<out>/fundus-disc.json``.

Choosing settings without the test set:

    python tasks/fundus/train_disc.py --holdout 10

holds out 10 of the 50 training images (drawn with ``--seed``), trains the same recipe on the other 40, measures
the held-out images every ``--val-every`` epochs under every outline post-processing (components / convex hull /
ellipse) and threshold (0.4 / 0.5 / 0.6), writes docs/benchmarks/fundus_disc_validation.{json,md} and ships nothing.

    python tasks/fundus/train_disc.py --remeasure --overwrite --threshold T --disc-shape S

keeps the shipped weights file as it is (same sha256), re-measures it on the test split with the given
post-processing and rewrites the card's settings, metrics and ``metrics_command``.
Rule, fixed before the run: at the last epoch, the post-processing and threshold with the lowest validation vCDR
error are shipped (``--disc-shape``, ``--threshold``); the epoch count stays unless the last epoch's validation
mean Dice is more than 0.01 below the best checkpoint's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import DATA_TERMS, build_net, command_line, recipe_args, refuse_existing, ship, train

import json
import time

import numpy as np
import torch

from medzoo.core import load_model
from medzoo.relay.trainer import TrainConfig


def evaluate_file(path: Path, *, threshold: float = 0.5, shape: str | None = None) -> dict[str, dict[str, float]]:
    model = load_model(path)
    res = model.task.evaluate(model.net, model.task.build_dataset("drishti", "test"), threshold=threshold, shape=shape)
    return {"drishti-test": {k: round(v, 4) for k, v in res.metrics.items()} | {"n": len(res.ids)}}


THRESHOLDS = (0.4, 0.5, 0.6)


def preprocessing_text(threshold: float, shape: str) -> str:
    """The model card's description of pre- and post-processing for these settings."""
    return ("resize (area) to a longer side of 384 px; CLAHE (clip 2.0, 8x8) on the L channel of CIE-LAB; RGB scaled "
            "to [0, 1]; zero-padded to a multiple of 32; sigmoid; probabilities resized back to the input size; "
            f"threshold {threshold}; disc = the roundest connected component of (disc or cup) among those at least a "
            f"quarter the area of the largest; cup = largest component of cup inside the disc; outlines post-processed "
            f"as '{shape}' (components: as they are; hull: convex hull; ellipse: least-squares ellipse fit), chosen on a "
            "validation split held out of the training images (docs/benchmarks/fundus_disc_validation.md).")


def validation_fn(task, net: torch.nn.Module, val_ds, every: int, total: int, history: list):  # type: ignore[no-untyped-def]
    """Per-epoch validation on held-out training images under every post-processing and threshold, through the
    task's own ``evaluate``."""
    from medzoo.tasks.fundus.metric import DISC_KEYS
    from medzoo.tasks.fundus.predict import DISC_SHAPES

    def validate(epoch: int) -> dict | None:
        if epoch % every and epoch != total:
            return None
        res = {}
        for shape in DISC_SHAPES:
            for t in THRESHOLDS:
                m = task.evaluate(net, val_ds, threshold=t, shape=shape).metrics
                res[f"{shape}@{t}"] = {k: round(float(m[k]), 4) for k in DISC_KEYS}
        history.append({"epoch": epoch, "metrics": res})
        net.train()
        return {"components@0.5": res["components@0.5"]}

    return validate


def write_validation(history: list, args, n_train: int, val_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    last = history[-1]["metrics"]
    choice = min(last, key=lambda k: (last[k]["vcdr_abs_err"], k != "components@0.5"))
    best_dice = max(h["metrics"]["components@0.5"]["dice_mean"] for h in history)
    final_dice = last["components@0.5"]["dice_mean"]
    shape, thr = choice.split("@")
    out = {"benchmark": "fundus_disc_validation", "command": command_line(),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "split": {"train_images": n_train, "validation_images": len(val_ids), "validation_ids": val_ids,
                     "seed": args.seed, "note": "validation images are held out of Drishti-GS1's official training split; "
                                                "the official test split is not used"},
           "rule": "lowest validation vCDR error at the last epoch picks post-processing and threshold; the epoch count "
                   "stays unless the last epoch's mean Dice (components@0.5) is > 0.01 below the best checkpoint's",
           "choice": {"disc_shape": shape, "threshold": float(thr), "epochs": args.epochs,
                      "final_dice_mean": final_dice, "best_checkpoint_dice_mean": best_dice,
                      "keep_epochs": final_dice >= best_dice - 0.01},
           "history": history}
    if getattr(args, "publish_dir", None):
        bench = Path(args.publish_dir)
    else:
        from common import _REPO

        bench = _REPO / "docs" / "benchmarks"
    from medzoo.io import atomic_write_bytes, atomic_write_json

    atomic_write_json(bench / "fundus_disc_validation.json", out)
    L = [f"<!-- generated by {command_line()} on {out['date_utc']} -->", "",
         "# fundus-disc: settings chosen on a validation split (not the test set)", "",
         f"{len(val_ids)} of Drishti-GS1's 50 official training images held out (seed {args.seed}); the recipe trained on "
         f"the other {n_train} for {args.epochs} epochs. Rule (fixed before the run): {out['rule']}.", "",
         f"**Choice: `disc_shape={shape}`, `threshold={thr}`; epochs kept: {out['choice']['keep_epochs']}** "
         f"(last-epoch validation mean Dice {final_dice:.4f}, best checkpoint {best_dice:.4f}).", "",
         f"## Last epoch ({history[-1]['epoch']}), validation images", "",
         "| post-processing @ threshold | Dice disc | Dice cup | vCDR abs. error |", "|---|---|---|---|"]
    L += [f"| {k} | {v['dice_disc']:.4f} | {v['dice_cup']:.4f} | {v['vcdr_abs_err']:.4f} |" for k, v in last.items()]
    L += ["", "## Validation curve (components @ 0.5)", "", "| epoch | Dice disc | Dice cup | vCDR abs. error |", "|---|---|---|---|"]
    L += [f"| {h['epoch']} | {h['metrics']['components@0.5']['dice_disc']:.4f} | {h['metrics']['components@0.5']['dice_cup']:.4f} "
          f"| {h['metrics']['components@0.5']['vcdr_abs_err']:.4f} |" for h in history]
    atomic_write_bytes(bench / "fundus_disc_validation.md", ("\n".join(L) + "\n").encode())
    print(json.dumps(out["choice"]), flush=True)


def remeasure(args) -> int:  # type: ignore[no-untyped-def]
    """Re-measure the shipped file with new post-processing settings and rewrite its card (weights untouched)."""
    import dataclasses

    from medzoo.io import sha256_file
    from medzoo.weights import WeightsMeta, write_card

    card_path = args.out / "fundus-disc.json"
    card = json.loads(card_path.read_text())
    path = args.out / card["file"]
    if sha256_file(path) != card["sha256"]:
        raise SystemExit(f"{path}: sha256 differs from {card_path}; refusing to re-measure a file the card does not describe")
    old = {"threshold": card["extra"].get("threshold", 0.5), "disc_shape": card["extra"].get("disc_shape", "components"),
           "metrics": card["metrics"]}
    card["extra"] |= {"threshold": args.threshold, "disc_shape": args.disc_shape,
                      "remeasured": {"previous": old, "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
                                     "why": "post-processing chosen on a validation split held out of the training "
                                            "images (docs/benchmarks/fundus_disc_validation.md); weights unchanged"}}
    card["metrics"] = evaluate_file(path, threshold=args.threshold, shape=args.disc_shape)
    card["metrics_command"] = command_line() + "  (re-measured by: python tasks/fundus/benchmark.py)"
    card["preprocessing"] = preprocessing_text(args.threshold, args.disc_shape)
    fields = {f.name for f in dataclasses.fields(WeightsMeta)}
    write_card(WeightsMeta(**{k: v for k, v in card.items() if k in fields}), args.out)
    print(json.dumps(card["metrics"]), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    from medzoo.tasks.fundus.predict import DEFAULT_DISC_SHAPE, DISC_SHAPES

    ap = recipe_args(__doc__, name="fundus-disc", epochs=60, batch_size=4)
    ap.add_argument("--holdout", type=int, default=0,
                    help="hold out N training images as a validation split; report, write the validation file, ship nothing")
    ap.add_argument("--publish-dir", type=Path, default=None,
                    help="with --holdout: where fundus_disc_validation.{json,md} are written (default: docs/benchmarks/)")
    ap.add_argument("--val-every", type=int, default=5)
    ap.add_argument("--disc-shape", choices=DISC_SHAPES, default=DEFAULT_DISC_SHAPE,
                    help="outline post-processing written into the model card")
    ap.add_argument("--threshold", type=float, default=0.5, help="probability threshold written into the model card")
    ap.add_argument("--remeasure", action="store_true",
                    help="keep <out>/fundus-disc.safetensors; re-measure it with --threshold/--disc-shape and rewrite "
                         "its card (needs --overwrite, as the card is replaced)")
    args = ap.parse_args(argv)
    if args.remeasure and not args.overwrite:
        ap.error(f"--remeasure rewrites {args.out / 'fundus-disc.json'}; pass --overwrite as well")
    if not args.remeasure and not args.holdout:  # --holdout ships nothing
        refuse_existing(args.out, "fundus-disc", args.overwrite)  # before training, not after it
    torch.set_num_threads(args.threads)
    if args.remeasure:
        return remeasure(args)

    task, net = build_net("fundus-disc", args.init, args.seed)
    validate, history, val_ids = None, [], []
    if args.holdout:
        from medzoo.tasks.fundus.dataset import DiscImages
        from medzoo.tasks.fundus.sources import resolve

        _, recs = resolve("drishti", "train", kind="disc")
        held = set(np.random.default_rng(args.seed).permutation(len(recs))[: args.holdout].tolist())
        ds = DiscImages([r for i, r in enumerate(recs) if i not in held], crop=True, augment=True)
        val_ds = DiscImages([r for i, r in enumerate(recs) if i in held], crop=False)
        val_ids = [r.id for i, r in enumerate(recs) if i in held]
        validate = validation_fn(task, net, val_ds, args.val_every, args.epochs, history)
    else:
        ds = task.build_dataset("drishti", "train", augment=True)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=1e-4,
                      warmup_steps=30, min_lr_ratio=0.02, seed=args.seed,
                      extra={"crop": [352, 384], "longer_side": 384, "loss": "dice+bce",
                             "init": str(args.init) if args.init else None})
    print(f"training on {len(ds)} images/epoch for {args.epochs} epochs", flush=True)
    stats = train(task, net, ds, cfg, site="drishti", ckpt=args.ckpt, log=args.log, validate=validate, resume_dir=args.resume_dir)
    if args.holdout:
        write_validation(history, args, len(ds), val_ids)
        return 0

    card = {
        "input": {"channels": "RGB", "dtype": "uint8", "shape": "H x W x 3", "network_input": "3 channels, CLAHE on LAB-L, in [0, 1]",
                  "scale": "resized to a longer side of 384 px (aspect kept), padded to a multiple of 32",
                  "field": "disc-centred photographs (Drishti-GS1-like, ~30 deg FOV)"},
        "preprocessing": preprocessing_text(args.threshold, args.disc_shape),
        "classes": ["background", "disc (outside cup)", "cup"],
        "training_data": ("Drishti-GS1 official training split (50 images, stored downscaled x4, ~512x438); targets: "
                          "soft maps >= 128, i.e. marked by at least 2 of 4 experts (the disc includes the cup)"),
        "sites": ["drishti"],
        "metrics_command": command_line() + "  (re-measured by: python tasks/fundus/benchmark.py)",
        "recipe": command_line(),
        "intended_use": ("Research and teaching: optic disc/cup outlines and vertical cup-to-disc ratio on disc-centred "
                         "colour fundus photographs. Not a medical device; not for glaucoma diagnosis or screening."),
        "license": "weights: MIT-style research release; the training data's terms below still apply",
        "data_terms": DATA_TERMS["drishti"] + " Research use only.",
        "summary": ("Optic disc and cup segmentation U-Net (timm MobileNetV3-Large encoder, random init) trained on "
                    "real Drishti-GS1 training images on CPU; metrics are on the official 51-image test split."),
        "extra": {"threshold": args.threshold, "disc_shape": args.disc_shape, "gt_threshold": 128,
                  "vcdr_definition": "cup height / disc height in pixel rows of the label map",
                  "vcdr_abs_err": "vs the vCDR of the majority masks; vcdr_abs_err_experts: vs the mean of the 4 experts' CDR values"},
    }
    meta = ship(task, net, args.out, name="fundus-disc", card=card,
                evaluate=lambda p: evaluate_file(p, threshold=args.threshold, shape=args.disc_shape), stats=stats, cfg=cfg, overwrite=args.overwrite)
    print(meta.metrics, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
