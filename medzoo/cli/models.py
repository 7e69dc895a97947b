"""``medzoo list | predict | evaluate | train | finetune``: the same commands for every task."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medzoo.cli.argtypes import add_training_options
from medzoo.cli.argtypes import probability as _probability
from medzoo.relay import DEFAULT_STRATEGY


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", help="list tasks and shipped weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("predict", help="run a model on input files and write masks / JSON / overlay PNGs")
    p.add_argument("model", help="shipped weights name (see `medzoo list`) or a .safetensors model file")
    p.add_argument("inputs", nargs="+", type=Path, help="input files (images, NIfTI volumes, DICOM files or series folders)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_input_options(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="measure a model on a labelled dataset (a built-in site or a folder)")
    p.add_argument("model", help="shipped weights name or .safetensors model file")
    p.add_argument("--data", required=True, help="built-in site name or a folder in the task's layout")
    p.add_argument("--split", default="test", choices=("train", "test", "all"),
                   help="which images or cases to measure (default test; a folder without a split file has every "
                        "sample in every split)")
    p.add_argument("--json", type=Path, help="also write the metrics (and per-sample values) as JSON here")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(func=cmd_evaluate)

    for name, helptext in (("train", "train a model for a task at one site"),
                           ("finetune", "fine-tune a model at a new site without forgetting earlier ones")):
        p = sub.add_parser(name, help=helptext)
        if name == "train":
            p.add_argument("task", help="task name (see `medzoo list`)")
            p.add_argument("--init", help="start from shipped weights name or a model file instead of random init")
        else:
            p.add_argument("model", help="shipped weights name or .safetensors model file")
            p.add_argument("--strategy", default=DEFAULT_STRATEGY,
                           help=f"continual-learning strategy (see `medzoo relay strategies`); default {DEFAULT_STRATEGY}")
        p.add_argument("--data", required=True, help="built-in site name or a folder in the task's layout")
        p.add_argument("--site", default=None, help="site name recorded with the model (default: the data's name)")
        p.add_argument("--out", type=Path, required=True, help="output .safetensors model file (never overwritten unless --overwrite)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
        add_training_options(p)
        p.set_defaults(func=cmd_train if name == "train" else cmd_finetune)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task-specific input options (used by the tasks that need them)")
    g.add_argument("--spacing", type=float, nargs="+", help="voxel/pixel spacing in mm (CT tasks; read from headers when available)")
    g.add_argument("--bbox", type=int, nargs=6, metavar=("Z0", "Y0", "X0", "Z1", "Y1", "X1"), help="lesion box (mediastinum), half-open voxel indices in medzoo's reoriented array, NOT the "
                        "file's stored voxel order: axis 0 inferior->superior, rows anterior->posterior, columns "
                        "patient's right->left (what medzoo.tasks.mediastinum.read_volume(path) returns; take the box "
                        "from that array, or pass --mask)")
    g.add_argument("--mask", type=Path, help="lesion mask file (mediastinum)")
    g.add_argument("--slice-index", type=int, help="axial slice of a volume (midline)")
    g.add_argument("--threshold", type=_probability, help="probability threshold, strictly between 0 and 1 (segmentation)")
    g.add_argument("--window", type=float, nargs=2, metavar=("CENTRE", "WIDTH"),
                   help="the input is a 0..255 image displayed with this HU window; it is mapped back to HU (CT tasks)")
    g.add_argument("--assume-hu", action="store_true", default=None,
                   help="accept an input whose values do not look like Hounsfield units as HU anyway (CT tasks)")


def _input_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {k: getattr(args, k) for k in ("spacing", "bbox", "mask", "slice_index", "threshold", "window", "assume_hu")}
    if opts["window"] is not None:
        opts["window"] = tuple(opts["window"])
    return {k: v for k, v in opts.items() if v is not None}


def load_any(model: str) -> Any:
    """A TaskModel from a shipped weights name or a model file path."""
    from medzoo import get_task
    from medzoo.core import load_model
    from medzoo.weights import get_weights, load_pretrained

    if Path(model).suffix == ".safetensors" or Path(model).exists():
        return load_model(model)
    meta = get_weights(model)
    return load_pretrained(get_task(meta.task), model)


def cmd_list(args: argparse.Namespace) -> int:
    from medzoo import list_tasks
    from medzoo.weights import list_weights

    print("tasks:")
    for t in list_tasks():
        print(f"  {t}")
    print("shipped weights:")
    ws = list_weights()
    if not ws:
        print("  (none)")
    for w in ws:
        primary = next(iter(w.metrics.items()), ("", {}))
        shown = ", ".join(f"{k}={v:.3f}" for k, v in list(primary[1].items())[:3])
        tag = "SYNTHETIC " if w.synthetic else ""
        print(f"  {w.name:<18} task={w.task:<15} {tag}sites={','.join(w.sites)}  {primary[0]}: {shown}")
    return 0


def check_predict_outputs(inputs: list[Path], out: Path) -> None:
    """Before any work: ``--out`` must be a folder (or not exist yet), and no two inputs may share the name their
    outputs are named after (the second would silently replace the first's)."""
    from medzoo.errors import InputError
    from medzoo.io import output_stem

    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder (predict writes one or more files per input); this is a file", out)
    seen: dict[str, Path] = {}
    for p in inputs:
        stem = output_stem(p)
        if stem in seen and seen[stem].resolve() != p.resolve():
            raise InputError(f"{seen[stem]} and {p} would write outputs of the same name ({stem}_* in {out}); rename "
                             "one or predict them into separate --out folders")
        if stem in seen:
            raise InputError(f"{p} is given twice")
        seen[stem] = p


def check_task_options(task: Any, options: dict[str, Any]) -> None:
    """Refuse input options the task does not use (a task lists them in ``predict_options``)."""
    from medzoo.errors import InputError

    accepted = getattr(task, "predict_options", None)
    if accepted is None:
        return
    unused = sorted(k for k in options if k not in accepted)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        takes = ", ".join("--" + k.replace("_", "-") for k in accepted) or "none"
        verb = "does" if len(unused) == 1 else "do"
        raise InputError(f"{flags} {verb} not apply to the {task.spec.name} task (it takes: {takes})")


def cmd_predict(args: argparse.Namespace) -> int:
    check_predict_outputs(list(args.inputs), args.out)
    model = load_any(args.model).to(args.device)
    check_task_options(model.task, _input_options(args))
    written = model.task.predict_files(model, list(args.inputs), args.out, **_input_options(args))
    for p in written:
        print(p)
    if model.task.spec.synthetic:
        print("note: this model was trained on SYNTHETIC data only; not for clinical use")
    return 0


def print_metrics(metrics: dict[str, float]) -> None:
    """One metric a line: counts as whole numbers, scores to 4 places."""
    from medzoo.core import is_count_metric

    for k, v in metrics.items():
        print(f"  {k:<24} {int(v)}" if is_count_metric(k) and float(v).is_integer() else f"  {k:<24} {v:.4f}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medzoo.io import atomic_write_json

    model = load_any(args.model).to(args.device)
    task = model.task
    ds = task.build_dataset(args.data, args.split)
    held_out = True
    if args.split == "test":  # a folder without a split file has no test images apart: say so
        from medzoo.splits import not_held_out, shared_with_train

        shared = shared_with_train(task, args.data, ds)
        if shared:
            held_out = False
            print(f"note: {args.data}: {not_held_out('test', 'train', shared, len(ds), whose='its')}: for a model "  # type: ignore[arg-type]
                  "trained on this folder, this is not a held-out result", file=sys.stderr)
    res = task.evaluate(model.net, ds, device=args.device)
    tag = " (SYNTHETIC data)" if task.spec.synthetic else ""
    split = args.split + ("" if held_out else ", NOT held out from train")
    print(f"{task.spec.name} on {args.data} [{split}], n={len(res.ids) or len(ds)}{tag}")  # type: ignore[arg-type]
    print_metrics(res.metrics)
    if args.json:
        atomic_write_json(args.json, {"task": task.spec.name, "model": args.model, "data": str(args.data),
                                      "split": args.split, **({} if held_out else {"held_out_from_train": False}),
                                      "synthetic": task.spec.synthetic, **res.to_json()})
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from medzoo import get_task
    from medzoo.io import check_writable
    from medzoo.relay.trainer import TrainConfig, train_site

    check_writable(args.out, overwrite=args.overwrite, what="model file")  # before any work, not after training
    if args.init:
        tm = load_any(args.init)
        task, net = tm.task, tm.net
        if task.spec.name != args.task:
            from medzoo.errors import WeightsError

            raise WeightsError(f"--init {args.init} is a {task.spec.name!r} model, not {args.task!r}")
    else:
        task = get_task(args.task)
        torch.manual_seed(args.seed)  # the same --seed gives the same random initialisation
        net = task.build_model()
    ds = task.build_dataset(args.data, "train", augment=True)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    stats = train_site(task, net, ds, cfg, site_name=args.site or Path(str(args.data)).name, device=args.device)
    meta = {"sites": [args.site or Path(str(args.data)).name], "train_stats": stats, "synthetic": task.spec.synthetic}
    out = task.wrap(net, meta).save(args.out)  # atomic: an interrupted run leaves no partial file
    print(json.dumps({"out": str(out), **stats}))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from medzoo.io import check_writable
    from medzoo.relay.api import finetune

    check_writable(args.out, overwrite=args.overwrite, what="model file")
    tm = load_any(args.model)
    out = finetune(tm, args.data, site=args.site, strategy=args.strategy, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device)
    path = out.save(args.out)  # atomic: an interrupted run leaves no partial file
    print(f"wrote {path}: {out.meta['summary']}")  # what was done, and that it is not yet measured
    return 0
