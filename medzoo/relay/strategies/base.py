"""What every strategy shares: typed settings, tensor state for the baton, and a ledger note.

A strategy is a small hook object (see :class:`medzoo.core.RelayHook`): it implements only the hooks it needs.
Settings are a frozen dataclass whose ``Literal`` fields are checked by :func:`parse_settings`, so a typo is an
error that lists the allowed values, never a silently ignored option.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, get_args, get_origin

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medzoo.errors import MedzooError

S = typing.TypeVar("S")


class StrategyError(MedzooError, ValueError):
    """An unknown strategy or option, or an option value outside its allowed choices."""


def parse_settings(cls: type[S], opts: Mapping[str, Any]) -> S:
    """Build settings dataclass ``cls`` from ``opts``, converting strings (from the CLI) and checking Literals.

    Raises:
        ValueError: unknown option, or a value outside a ``Literal``'s choices, or not convertible.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(opts) - fields
    if unknown:
        raise StrategyError(f"unknown option(s) {sorted(unknown)} for {cls.__name__}; known: {sorted(fields)}")
    out: dict[str, Any] = {}
    for k, v in opts.items():
        hint = hints[k]
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            if v not in choices:
                raise StrategyError(f"option {k}={v!r} must be one of {list(choices)}")
            out[k] = v
        elif hint is bool:
            if isinstance(v, str):
                if v.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise StrategyError(f"option {k}={v!r} must be a boolean (true/false)")
                v = v.lower() in ("1", "true", "yes", "on")
            out[k] = bool(v)
        elif hint in (int, float):
            try:
                out[k] = hint(v)
            except (TypeError, ValueError) as e:
                raise StrategyError(f"option {k}={v!r} must be a {hint.__name__}") from e
        else:
            out[k] = v
    return cls(**out)


class Strategy:
    """Base of the built-in strategies: settings, no state, no ledger note. Subclasses add hooks.

    Attributes:
        name: registry name (``make_strategy(name)``).
        settings: the frozen settings dataclass instance.
    """

    name: ClassVar[str] = "base"
    Settings: ClassVar[type] = type(None)

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._arriving_norm: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def before_site(self, ctx: Any) -> None:
        """With ``settings.norm_stats == "pool"``, remember the normalisation statistics the model arrived with
        (subclasses that override this call ``super().before_site(ctx)``). The trainer calls it on the arriving
        weights, before a checkpoint is loaded, so a resumed site mixes with the same statistics."""
        self._arriving_norm = {}
        mode = getattr(self.settings, "norm_stats", "adapt")
        if mode != "adapt":
            from medzoo.norm import norm_eval_of

            if norm_eval_of(ctx.model) == "image":
                raise StrategyError(f"norm_stats={mode} sets the BatchNorm running statistics, which this network "
                                    "never uses at inference (norm_eval=image): use norm_stats=adapt")
        if mode == "pool" and ctx.n_seen > 0:
            self._arriving_norm = {n: (m.running_mean.detach().clone(), m.running_var.detach().clone())
                                   for n, m in norm_layers(ctx.model)}

    def settings_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors this strategy carries in the baton (names without the ``strategy/`` prefix)."""
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} carries no state, got {sorted(state)[:3]}")

    def lr_scale(self, ctx: Any) -> float:
        """This site's learning-rate factor: ``settings.site_lr_decay ** site_index`` when the strategy has that
        setting (the per-task decay of Mirzadeh et al., NeurIPS 2020, "Understanding the role of training regimes
        in continual learning": later sites take smaller steps from the arriving model), else 1."""
        return float(getattr(self.settings, "site_lr_decay", 1.0)) ** ctx.site_index

    def epoch_start(self, ctx: Any, epoch: int) -> None:
        """Normalisation statistics at sites after the first, by ``settings.norm_stats``:

        - ``"adapt"`` (default): plain training; BatchNorm running statistics follow this site's batches, so
          the earlier sites' statistics are overwritten.
        - ``"freeze"``: the layers' running statistics stay as they arrived (BatchNorm in eval mode; its affine
          weights still learn), and training normalises exactly as inference will.
        - ``"pool"``: at the start of every epoch, this site's own statistics are measured at the current
          weights (:func:`site_norm_stats`) and mixed with the arriving ones by sample count,
          ``n_seen : n_site``, as the mean and variance of the union of the sites' data
          (:func:`mix_norm_stats`); the layers then train frozen at that mixture. The statistics of the
          final model thus estimate those of all sites' data pooled, as central training's would.
        """
        mode = getattr(self.settings, "norm_stats", "adapt")
        if ctx.n_seen <= 0 or mode == "adapt":
            return
        if mode == "pool":
            if not self._arriving_norm:
                raise StrategyError("norm_stats=pool: before_site did not record the arriving statistics "
                                    f"(does {type(self).__name__}.before_site call super().before_site?)")
            n_k = len(ctx.train_dataset)
            mix_norm_stats(ctx.model, self._arriving_norm,
                           site_norm_stats(ctx.task, ctx.model, ctx.train_dataset, ctx.device, seed=epoch),
                           w_old=ctx.n_seen / (ctx.n_seen + n_k))
        freeze_norm_stats(ctx.model)

    def ledger_note(self) -> dict[str, Any]:
        """JSON-able facts for this site's ledger entry (e.g. the replay generator's memorisation measure)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"


def iterate_batches(dataset: Dataset[Any], batch_size: int, device: torch.device, max_batches: int | None = None,
                    seed: int = 0) -> Iterable[dict[str, Any]]:
    """Batches of ``dataset`` on ``device`` in a fixed shuffled order (for importance estimates, generator fitting)."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        yield {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def norm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._NormBase]]:
    """``(name, layer)`` for every normalisation layer of ``model`` that keeps running statistics."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and m.running_mean is not None]


def freeze_norm_stats(model: nn.Module) -> int:
    """Put every BatchNorm / InstanceNorm-with-running-stats layer of ``model`` in eval mode (running statistics
    neither used from the batch nor updated); return how many layers were frozen."""
    layers = norm_layers(model)
    for _, m in layers:
        m.eval()
    return len(layers)


@torch.no_grad()
def site_norm_stats(task: Any, model: nn.Module, dataset: Dataset[Any], device: torch.device, *,
                    max_samples: int = 64, batch_size: int = 8, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Running ``(mean, var)`` of every normalisation layer measured on (up to ``max_samples`` of) ``dataset`` at
    the model's current weights: a forward pass in training mode with cumulative averaging (``momentum=None``).
    The model's own statistics, momenta and train/eval mode are left exactly as they were. (``torch.optim.swa_utils.
    update_bn`` does the same pass but feeds ``model(batch[0])`` and keeps the result in the model; medzoo batches
    are dicts that only the task's ``step`` knows how to feed, and the arriving statistics must survive.)"""
    layers = norm_layers(model)
    saved = {n: (m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.training)
             for n, m in layers}
    was_training = model.training
    try:
        model.train()
        for _, m in layers:
            m.reset_running_stats()
            m.momentum = None
        for batch in iterate_batches(dataset, batch_size, device, max_batches=max(1, math.ceil(max_samples / batch_size)),
                                     seed=seed):
            task.step(model, batch)
        return {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in layers}
    finally:
        for n, m in layers:
            mom, mean, var, nbt, tr = saved[n]
            m.momentum = mom
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(nbt)
        model.train(was_training)
        for n, m in layers:
            m.train(saved[n][4])


@torch.no_grad()
def mix_norm_stats(model: nn.Module, old: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   new: Mapping[str, tuple[torch.Tensor, torch.Tensor]], w_old: float) -> None:
    """Set every normalisation layer's running statistics to the mixture ``w_old * old + (1 - w_old) * new``:
    mean ``a*m1 + b*m2``, variance ``a*v1 + b*v2 + a*b*(m1 - m2)**2`` (the variance of the union)."""
    if not 0.0 <= w_old <= 1.0:
        raise ValueError(f"w_old must lie in [0, 1], got {w_old}")
    a, b = w_old, 1.0 - w_old
    for n, m in norm_layers(model):
        if n not in old or n not in new:
            raise StrategyError(f"normalisation layer {n!r} has no recorded statistics to mix")
        (m1, v1), (m2, v2) = old[n], new[n]
        m1, v1, m2, v2 = (t.to(m.running_mean.device, m.running_mean.dtype) for t in (m1, v1, m2, v2))
        m.running_mean.copy_(a * m1 + b * m2)
        m.running_var.copy_(a * v1 + b * v2 + a * b * (m1 - m2) ** 2)


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's floating-point state (parameters and float buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
