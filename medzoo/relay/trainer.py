"""The training loop, and nothing else: hooks add every continual-learning behaviour.

Where each hook fires::

    before_site(ctx)
    dataset = adapt_dataset(ctx, dataset)          # each hook in turn
    for epoch:                                      # (epoch_start(ctx, epoch) if a hook has it)
        for batch:
            zero_grad
            out = task.step(model, batch)           # task loss
            loss = out.loss + sum(extra_loss(ctx, batch, out))
            backward; step
        scheduler.step
    after_site(ctx)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medzoo.core import RelayHook, SiteContext, Task


@dataclass
class TrainConfig:
    """Optimisation settings of one site's training.

    Attributes:
        epochs: passes over the site's (possibly hook-adapted) training dataset.
        batch_size: samples per step.
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _call(hooks: Sequence[RelayHook], name: str, *args: Any) -> list[Any]:
    """Call hook method ``name`` on every hook that has it; return their results (Avalanche's trigger_plugins)."""
    return [getattr(h, name)(*args) for h in hooks if hasattr(h, name)]


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
) -> dict[str, float]:
    """Train ``model`` in place on one site's ``dataset``; return summary stats (loss, steps, CPU/wall seconds).

    Example:
        >>> from medzoo import get_task                          # doctest: +SKIP
        >>> task = get_task("midline"); net = task.build_model()  # doctest: +SKIP
        >>> train_site(task, net, task.build_dataset("synth-a", "train", augment=True), TrainConfig(epochs=1))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    dev = torch.device(device)
    seed_everything(config.seed)
    model.to(dev).train()
    ctx = SiteContext(task=task, model=model, site_index=site_index, site_name=site_name, device=dev,
                      train_dataset=dataset, n_seen=n_seen, epochs=config.epochs)
    _call(hooks, "before_site", ctx)
    for h in hooks:
        if hasattr(h, "adapt_dataset"):
            dataset = h.adapt_dataset(ctx, dataset)
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=len(dataset) >= config.batch_size,  # type: ignore[arg-type]
                        num_workers=config.num_workers, generator=gen, persistent_workers=config.num_workers > 0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = max(1, config.epochs * len(loader))

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        t = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    use_amp = config.amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    t0, c0 = time.perf_counter(), time.process_time()
    step, last = 0, float("nan")
    for epoch in range(config.epochs):
        _call(hooks, "epoch_start", ctx, epoch)
        running, n = 0.0, 0
        bar = tqdm(loader, desc=f"{site_name} epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        for batch in bar:
            batch = {k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                out = task.step(model, batch)
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
        if on_epoch_end is not None:
            on_epoch_end(epoch, {"loss": last, "lr": sched.get_last_lr()[0]})
    _call(hooks, "after_site", ctx)
    model.eval()
    return {"loss": last, "steps": float(step), "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
