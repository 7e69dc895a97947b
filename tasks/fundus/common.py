"""Shared code of the fundus recipes: train through medzoo's one loop, checkpoint, ship fp16 weights + model card."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
_REPO = Path(__file__).resolve().parents[2]
if (_REPO / "medzoo").is_dir() and str(_REPO) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(_REPO))

import torch  # noqa: E402

from medzoo.core import Task, save_model  # noqa: E402
from medzoo.io import command_line, sha256_file  # noqa: E402,F401  (command_line: for the recipes)
from medzoo.relay.trainer import TrainConfig, train_site  # noqa: E402
from medzoo.weights import WeightsMeta, write_card  # noqa: E402

DATA_TERMS = {
    "drive": "DRIVE: free for research use, registration at drive.grand-challenge.org; cite Staal et al., IEEE TMI 2004.",
    "stare": "STARE: freely available for research use; cite Hoover et al., IEEE TMI 2000.",
    "hrf": "HRF: free for research (CC BY 4.0 on later mirrors); cite Budai et al., IJBI 2013.",
    "drishti": "Drishti-GS1: research use (registration at IIIT-H CVIT); cite Sivaswamy et al., ISBI 2014 and JSM BIDP 2015.",
}


def refuse_existing(out_dir: Path, name: str, overwrite: bool) -> None:
    """Exit (status 2) if ``<out_dir>/<name>.safetensors`` or ``<name>.json`` exists and ``overwrite`` is false:
    a recipe never replaces weights or a card (e.g. the shipped ones in weights/) silently."""
    existing = [p for p in (out_dir / f"{name}.safetensors", out_dir / f"{name}.json") if p.exists()]
    if existing and not overwrite:
        print(f"{os.path.basename(sys.argv[0])}: error: {', '.join(map(str, existing))} already exist(s); "
              "pass --overwrite to replace, or another --out", file=sys.stderr)
        raise SystemExit(2)


def train(task: Task, net: torch.nn.Module, dataset: Any, cfg: TrainConfig, *, site: str, ckpt: Path,
          log: Path | None = None, validate: Any = None, resume_dir: Path | None = None) -> dict[str, float]:
    """Run :func:`medzoo.relay.trainer.train_site`, saving ``ckpt`` (a medzoo model file) after every epoch.

    ``validate(epoch) -> dict | None``, when given, runs after each epoch; what it returns joins the epoch's log line.
    ``resume_dir``: the trainer's full checkpoint (model, optimiser, schedule) is written there after every epoch;
    rerunning the same command after an interruption resumes from it (same seed: same weights as an uninterrupted
    run). It is removed once training finishes.
    """

    def on_epoch_end(epoch: int, stats: dict[str, float]) -> None:
        save_model(task, net, ckpt, meta={"epoch": epoch + 1, **stats})
        val = validate(epoch + 1) if validate is not None else None
        line = json.dumps({"time": time.strftime("%H:%M:%S"), "epoch": epoch + 1, "of": cfg.epochs, **stats,
                           **({"validation": val} if val else {})})
        print(line, flush=True)
        if log is not None:
            with open(log, "a") as f:
                f.write(line + "\n")
        net.train()

    stats = train_site(task, net, dataset, cfg, site_name=site, progress=False, on_epoch_end=on_epoch_end,
                       checkpoint_dir=resume_dir)
    if stats.get("resumed_from_epoch"):
        print(f"resumed from the checkpoint in {resume_dir} after epoch {int(stats['resumed_from_epoch'])}; "
              "wall/CPU seconds cover this process only", flush=True)
    if resume_dir is not None:
        shutil.rmtree(resume_dir, ignore_errors=True)
    return stats


def ship(task: Task, net: torch.nn.Module, out_dir: Path, *, name: str, card: dict[str, Any],
         evaluate: Any, stats: dict[str, float], cfg: TrainConfig, overwrite: bool = False) -> WeightsMeta:
    """Save ``net`` as fp16 ``<out_dir>/<name>.safetensors``, measure the saved file on the test sets with
    ``evaluate(path) -> {set: metrics}``, and write the model card ``<name>.json`` with its sha256. An existing
    file or card there is refused unless ``overwrite``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    refuse_existing(out_dir, name, overwrite)
    path = out_dir / f"{name}.safetensors"
    header_meta = {k: card[k] for k in ("summary", "sites", "training_data", "recipe", "license", "data_terms")}
    task.wrap(net, header_meta).save(path, half=True)
    t0 = time.perf_counter()
    metrics = evaluate(path)
    cost = {"cpu_process_s": round(stats["cpu_s"], 1), "wall_s": round(stats["wall_s"], 1),
            "steps": int(stats["steps"]), "final_loss": round(stats["loss"], 4),
            "device": "cpu", "cpu_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "note": "cpu_process_s from time.process_time() over train_site (all threads of the process); "
                    "test evaluation took %.0f s wall (not included)" % (time.perf_counter() - t0),
            "config": {k: v for k, v in cfg.__dict__.items() if k != "extra"} | cfg.extra}
    meta = WeightsMeta(
        name=name, task=task.spec.name, file=path.name, sha256=sha256_file(path),
        architecture=task.architecture(net), num_params=sum(p.numel() for p in net.parameters()),
        metrics=metrics, training_cost=cost, synthetic=False, **card)
    write_card(meta, out_dir)
    return meta


def recipe_args(doc: str | None, *, name: str, epochs: int, batch_size: int) -> Any:
    """A parser with the command-line options both fundus recipes take (defaults differ per recipe)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=_REPO / "weights",
                    help=f"folder for {name}.safetensors/.json (default: the repository's weights/, %(default)s, "
                         "whatever the current folder; an existing file there is refused unless --overwrite)")
    ap.add_argument("--overwrite", action="store_true",
                    help=f"replace {name}.safetensors/.json already at --out (e.g. the shipped weights)")
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt", type=Path, default=Path(f"/tmp/{name}.ckpt.safetensors"))
    ap.add_argument("--log", type=Path, default=None, help="append one JSON line per epoch here")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint")
    ap.add_argument("--resume-dir", type=Path, default=_REPO / "runs" / "recipes" / name,
                    help="full training checkpoint after every epoch; rerun the same command to resume (default: %(default)s)")
    return ap


def build_net(name: str, init: Path | None, seed: int = 0) -> tuple[Task, torch.nn.Module]:
    """The task and a fresh network (random init seeded by ``seed``), or one loaded (strictly) from ``init``."""
    from medzoo import get_task
    from medzoo.core import load_state_dict_strict, read_model_file

    task = get_task(name)
    torch.manual_seed(seed)
    net = task.build_model()
    if init is not None:
        _, _, _, state = read_model_file(init)
        load_state_dict_strict(net, state, source=str(init))
    return task, net
