"""The training loop, and nothing else: hooks add every continual-learning behaviour.

Where each hook fires::

    before_site(ctx)
    dataset = adapt_dataset(ctx, dataset)          # each hook in turn
    lr *= prod(lr_scale(ctx)); warm-up steps = max(warmup_fraction(ctx)) * steps   # cosine schedule after it
    opt = AdamW(...); setup_optimizer(ctx, opt)    # e.g. start from carried optimiser state
    for epoch:                                      # epoch_start(ctx, epoch) if a hook has it
        for batch:
            zero_grad
            out = task.step(model, batch)           # task loss
            loss = out.loss + sum(extra_loss(ctx, batch, out))
            backward; step                          # after_step(ctx, batch, out)
        new_state = epoch_end(ctx, epoch)           # a hook may return weights to load (e.g. a weight merge)
        checkpoint (when checkpoint_dir is set)
    after_site(ctx)

Determinism and resuming: every epoch reseeds Python, NumPy, torch and the shuffling generator from
``(seed, epoch)``, and a checkpoint written after an epoch holds the model, optimiser, scheduler and scaler
state. Rerunning with the same arguments after a kill resumes from the last finished epoch and ends with the
same weights as an uninterrupted run (hooks are rebuilt by re-running ``before_site`` on the arriving model,
which is why hooks must be deterministic functions of the arriving model, the data and the seed).

Several GPUs (or CPU processes) at one site: launch with ``torchrun``; when ``torch.distributed`` is
initialised the model is wrapped in ``DistributedDataParallel`` and each process reads its shard through a
``DistributedSampler``. Only rank 0 shows progress and writes checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medzoo.core import RelayHook, SiteContext, Task
from medzoo.errors import InputError

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Optimisation settings of one site's training.

    Attributes:
        epochs: passes over the site's (possibly hook-adapted) training dataset.
        batch_size: samples per step (per process under DDP).
        lr: peak learning rate (AdamW), cosine-decayed to ``lr * min_lr_ratio`` with ``warmup_steps`` linear warm-up.
        weight_decay: AdamW weight decay.
        num_workers: DataLoader worker processes (0 = in the main process).
        seed: seeds Python, NumPy and torch; with the same seed a run is repeatable on the same machine.
        amp: mixed precision on CUDA (bf16/fp16 autocast); ignored on CPU.
        grad_clip: max gradient norm (0 = off).
    """

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    num_workers: int = 0
    seed: int = 0
    amp: bool = True
    grad_clip: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse settings that would train silently wrong (a negative learning rate ascends the loss).

        Raises:
            InputError: a count that is not a whole number in range, or a rate that is not a finite number in range.
        """
        for name, least in (("epochs", 1), ("batch_size", 1), ("warmup_steps", 0), ("num_workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"{name} must be a whole number >= {least}, got {value!r}")
        for name, lo, lo_open, hi in (("lr", 0.0, True, math.inf), ("weight_decay", 0.0, False, math.inf),
                                      ("min_lr_ratio", 0.0, False, 1.0), ("grad_clip", 0.0, False, math.inf)):
            value = getattr(self, name)
            ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
                  and (value > lo if lo_open else value >= lo) and value <= hi)
            if not ok:
                bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
                bound += f" and <= {hi:g}" if math.isfinite(hi) else ""
                raise InputError(f"{name} must be a finite number {bound}, got {value!r}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def reseed_dataset(ds: Any, seed: int, _depth: int = 0) -> None:
    """Reseed a dataset's own random generators, so an epoch's augmentations depend only on ``seed``.

    Calls ``ds.set_seed(seed)`` when the dataset has it; otherwise reseeds attributes that carry their own
    generator (albumentations pipelines: ``set_random_seed``), and recurses into ``Subset``/``ConcatDataset``.
    """
    if _depth > 3 or ds is None:
        return
    if callable(getattr(ds, "set_seed", None)):
        ds.set_seed(seed)
        return
    for child in (getattr(ds, "dataset", None), *getattr(ds, "datasets", ())):
        if isinstance(child, Dataset):
            reseed_dataset(child, seed, _depth + 1)
    for v in getattr(ds, "__dict__", {}).values():
        if callable(getattr(v, "set_random_seed", None)) and not isinstance(v, type):
            v.set_random_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: a function of (seed, epoch) only, so a resumed run replays the same stream."""
    return (seed * 1_000_003 + 7_919 * (epoch + 1)) % (2**31 - 1)


def state_fingerprint(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over a model's state dict, or a given state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    state = model.state_dict() if isinstance(model, nn.Module) else model
    for k, v in sorted(state.items()):
        t = v.detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _call(hooks: Sequence[RelayHook], name: str, *args: Any) -> list[Any]:
    """Call hook method ``name`` on every hook that has it; return their results (Avalanche's trigger_plugins)."""
    return [getattr(h, name)(*args) for h in hooks if hasattr(h, name)]


def _dist() -> tuple[bool, int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def init_distributed(device: str) -> tuple[str, int]:
    """Under torchrun (WORLD_SIZE > 1) initialise the process group; return (device, rank)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device, (dist.get_rank() if dist.is_available() and dist.is_initialized() else 0)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device, dist.get_rank()


def train_site(
    task: Task,
    model: nn.Module,
    dataset: Dataset[Any],
    config: TrainConfig,
    *,
    hooks: Sequence[RelayHook] = (),
    site_name: str = "site",
    site_index: int = 0,
    n_seen: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    stop_after_epochs: int | None = None,
    run_identity: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Train ``model`` in place on one site's ``dataset``; return summary stats (loss, steps, CPU/wall seconds).

    Args:
        task: the task (its ``step`` gives the loss).
        model: the arriving network; trained in place.
        dataset: this site's training data.
        config: optimisation settings.
        hooks: strategy hook objects (see :class:`~medzoo.core.RelayHook`).
        site_name, site_index, n_seen: what hooks see in their :class:`~medzoo.core.SiteContext`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; under torchrun pass this process's device.
        progress: show tqdm bars.
        on_epoch_end: called with ``(epoch, {"loss", "lr"})`` after each epoch.
        checkpoint_dir: write ``checkpoint.pt`` there after every epoch and resume from it when it exists and
            belongs to the same run (same arriving weights, config, site and data, see ``run_identity``); a note on
            stderr says when a run resumes or ignores another run's checkpoint; removed after success by the caller.
        stop_after_epochs: stop (without ``after_site``) after this many epochs in total: simulates a kill.
        run_identity: JSON-able facts that identify the run besides the weights, config and site (the data source,
            split, size, sample ids, ``max_samples``); a checkpoint is resumed only when they match too. The
            dataset's length is always part of it.

    Returns:
        ``{"loss", "steps", "wall_s", "cpu_s", "resumed_from_epoch", "completed", "lr_scale", "warmup_steps"}``
        (``lr_scale``: the product of the hooks' ``lr_scale(ctx)`` factors applied to ``config.lr`` at this site;
        ``warmup_steps``: the linear warm-up, the larger of ``config.warmup_steps`` and the hooks'
        ``warmup_fraction(ctx)`` times the site's steps).

    Example:
        >>> from medzoo import get_task                          # doctest: +SKIP
        >>> task = get_task("midline"); net = task.build_model()  # doctest: +SKIP
        >>> train_site(task, net, task.build_dataset("synth-a", "train", augment=True), TrainConfig(epochs=1))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    dev = torch.device(device)
    distributed, rank, world = _dist()
    seed_everything(config.seed)
    model.to(dev).train()
    fingerprint = hashlib.sha256(json.dumps(
        {"w": state_fingerprint(model), "cfg": asdict(config), "site": site_name, "i": site_index, "n": n_seen,
         "world": world, "data": dict(run_identity or {}), "n_data": len(dataset)},  # type: ignore[arg-type]
        sort_keys=True, default=str).encode()).hexdigest()
    ctx = SiteContext(task=task, model=model, site_index=site_index, site_name=site_name, device=dev,
                      train_dataset=dataset, n_seen=n_seen, epochs=config.epochs)
    _call(hooks, "before_site", ctx)
    for h in hooks:
        if hasattr(h, "adapt_dataset"):
            dataset = h.adapt_dataset(ctx, dataset)
    gen = torch.Generator().manual_seed(config.seed)
    drop_last = len(dataset) >= config.batch_size * world  # type: ignore[arg-type]
    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=drop_last)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=drop_last, num_workers=config.num_workers, generator=gen if sampler is None else None,
                        persistent_workers=config.num_workers > 0)
    net: nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
        net = DDP(model, device_ids=cuda_ids)
    params = [p for p in model.parameters() if p.requires_grad]
    lr_scale = math.prod(float(f) for f in _call(hooks, "lr_scale", ctx))
    opt = torch.optim.AdamW(params, lr=config.lr * lr_scale, weight_decay=config.weight_decay)
    _call(hooks, "setup_optimizer", ctx, opt)
    total = max(1, config.epochs * len(loader))
    warmup = max([config.warmup_steps, *(round(float(f) * total) for f in _call(hooks, "warmup_fraction", ctx))])

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    use_amp = config.amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, step, last = 0, 0, float("nan")
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            for h, hs in zip(hooks, saved.get("hooks", [])):
                if hs and hasattr(h, "load_checkpoint_state"):
                    h.load_checkpoint_state(hs)
            start_epoch, step, last = int(saved["epoch"]) + 1, int(saved["step"]), float(saved["loss"])
            if rank == 0:
                left = (f"at epoch {start_epoch + 1} of {config.epochs}" if start_epoch < config.epochs
                        else f"with all {config.epochs} epochs done")
                print(f"medzoo: resuming {left} ({start_epoch} done before; checkpoint in {ckpt.parent})",
                      file=sys.stderr, flush=True)
        elif rank == 0:
            print(f"medzoo: ignoring the checkpoint in {ckpt.parent}: it belongs to another run (other arriving "
                  "weights, settings, site or data); starting from epoch 1", file=sys.stderr, flush=True)
    resumed_from = start_epoch
    t0, c0 = time.perf_counter(), time.process_time()
    completed = True
    for epoch in range(start_epoch, config.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            completed = False
            break
        es = epoch_seed(config.seed, epoch)
        seed_everything(es)
        reseed_dataset(dataset, es)
        gen.manual_seed(es)
        if sampler is not None:
            sampler.set_epoch(epoch)
        _call(hooks, "epoch_start", ctx, epoch)
        running, n = 0.0, 0
        bar = tqdm(loader, desc=f"{site_name} epoch {epoch + 1}/{config.epochs}", disable=not progress or rank != 0, leave=False)
        for batch in bar:
            batch = {k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                out = task.step(net, batch)
                loss = out.loss
                for extra in _call(hooks, "extra_loss", ctx, batch, out):
                    if extra is not None:
                        loss = loss + extra
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            _call(hooks, "after_step", ctx, batch, out)
            step += 1
            running += float(loss.detach())
            n += 1
            bar.set_postfix(loss=f"{running / n:.4f}")
        last = running / max(1, n)
        for new_state in _call(hooks, "epoch_end", ctx, epoch):
            if new_state is not None:
                with torch.no_grad():
                    model.load_state_dict(dict(new_state), strict=False)
        if ckpt is not None and rank == 0:
            from medzoo.io import atomic_path

            hook_states = [h.checkpoint_state() if hasattr(h, "checkpoint_state") else {} for h in hooks]
            with atomic_path(ckpt) as tmp:
                torch.save({"fingerprint": fingerprint, "epoch": epoch, "step": step, "loss": last,
                            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "scaler": scaler.state_dict(), "hooks": hook_states}, tmp)
        if on_epoch_end is not None and rank == 0:
            on_epoch_end(epoch, {"loss": last, "lr": sched.get_last_lr()[0]})
    if completed:
        _call(hooks, "after_site", ctx)
    model.eval()
    return {"loss": last, "steps": float(step), "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "resumed_from_epoch": float(resumed_from), "completed": float(completed), "lr_scale": lr_scale,
            "warmup_steps": float(warmup)}

