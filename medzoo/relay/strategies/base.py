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


#: allowed ranges of the numeric settings, by name (a name means the same in every strategy):
#: ``(low, low_inclusive, high, high_inclusive)``, ``None`` = unbounded. Every number must also be finite.
SETTING_RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "alpha": (0, True, None, False), "distill_alpha": (0, True, None, False), "replay_weight": (0, True, None, False),
    "lam": (0, True, None, False), "gamma": (0, True, 1, True), "site_lr_decay": (0, False, None, False),
    "site_warmup": (0, True, 1, False), "max_batches": (1, True, None, False), "batch_size": (1, True, None, False),
    "replay_batch": (1, True, None, False), "gen_size": (16, True, None, False), "gen_latent": (1, True, None, False),
    "gen_epochs": (1, True, None, False), "gen_max_samples": (1, True, None, False), "max_sites": (1, True, None, False),
    "fisher_batches": (1, True, None, False),
}


#: integer settings that must be a multiple of a number (the generator halves its size four times).
SETTING_MULTIPLES: dict[str, int] = {"gen_size": 16}


def setting_range(name: str) -> str:
    """The allowed range of numeric setting ``name`` in words (``">= 0 and <= 1"``), or ``""`` when unbounded."""
    lo, lo_in, hi, hi_in = SETTING_RANGES.get(name, (None, True, None, True))
    lo_s = "" if lo is None else f"{'>=' if lo_in else '>'} {lo}"
    hi_s = "" if hi is None else f"{'<=' if hi_in else '<'} {hi}"
    mult = f"a multiple of {SETTING_MULTIPLES[name]}" if name in SETTING_MULTIPLES else ""
    return " and ".join(x for x in (lo_s, hi_s, mult) if x)


def setting_choices(cls: type) -> dict[str, str]:
    """What each field of settings dataclass ``cls`` accepts, in words: ``"fixed | samples"``, ``"true | false"``,
    ``"number >= 0"``, ``"integer >= 1"`` (for ``medzoo relay strategies``); the strategy's own settings first, the
    :class:`SiteSettings` it inherits last."""
    hints = typing.get_type_hints(cls)
    out: dict[str, str] = {}
    shared = {f.name for f in dataclasses.fields(SiteSettings)}
    # the strategy's own settings first, then the site settings it inherits (stable sort keeps each group's order)
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name in shared):  # type: ignore[arg-type]
        hint = hints[f.name]
        if get_origin(hint) is Literal:
            out[f.name] = " | ".join(str(c) for c in get_args(hint))
        elif hint is bool:
            out[f.name] = "true | false"
        elif hint in (int, float):
            out[f.name] = " ".join(x for x in ("integer" if hint is int else "number", setting_range(f.name)) if x)
        else:
            out[f.name] = getattr(hint, "__name__", str(hint))
    return out


def _check_range(name: str, value: float) -> None:
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise StrategyError(f"option {name}={value!r:.40} must be a finite number")
    lo, lo_in, hi, hi_in = SETTING_RANGES.get(name, (None, True, None, True))
    if (lo is not None and (value < lo or (value == lo and not lo_in))) or \
            (hi is not None and (value > hi or (value == hi and not hi_in))) or \
            (name in SETTING_MULTIPLES and value % SETTING_MULTIPLES[name]):
        raise StrategyError(f"option {name}={value!r} must be {setting_range(name)}")


def parse_settings(cls: type[S], opts: Mapping[str, Any], *, check_ranges: bool = True) -> S:
    """Build settings dataclass ``cls`` from ``opts``, converting strings (from the CLI) and checking Literals.

    ``check_ranges=False`` skips the numeric ranges (:data:`SETTING_RANGES`), for settings read back from a baton
    that an older medzoo wrote before a range was checked: its model must still load, evaluate and export.

    Raises:
        ValueError: unknown option, a value outside a ``Literal``'s choices or outside the option's range
            (:data:`SETTING_RANGES`; numbers must be finite), or not convertible.
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
            kind = "an integer" if hint is int else "a number"
            if isinstance(v, bool) or (hint is int and isinstance(v, float) and not v.is_integer()):
                raise StrategyError(f"option {k}={v!r} must be {kind}")
            try:
                out[k] = hint(v)
            except (TypeError, ValueError, OverflowError) as e:
                raise StrategyError(f"option {k}={v!r} must be {kind}") from e
            if check_ranges:
                _check_range(k, out[k])
        else:
            out[k] = v
    return cls(**out)


@dataclasses.dataclass(frozen=True)
class SiteSettings:
    """How a protecting strategy (EWC, MAS, LwF, the Relay Learning recipe) trains each site after the first; its
    settings dataclass inherits these (naive fine-tuning has none: it is the unprotected baseline).

    Attributes:
        site_lr_decay: learning-rate factor per earlier site (site k trains at ``lr * site_lr_decay**k``; 1 = off).
        site_warmup: share of a site's steps with a linear learning-rate warm-up, at sites after the first (0 = off).
        carry_optimizer: carry AdamW's per-weight second-moment estimates in the baton and start the next site's
            optimiser from them (see :meth:`Strategy.setup_optimizer`).
        norm_stats: at sites after the first, ``"adapt"`` lets BatchNorm running statistics follow the new site's
            data (plain training); ``"freeze"`` keeps them as they arrived; ``"pool"`` trains at the
            sample-weighted mixture of the arriving and this site's statistics (see :meth:`Strategy.epoch_start`).
    """

    site_lr_decay: float = 1.0
    site_warmup: float = 0.0
    carry_optimizer: bool = False
    norm_stats: Literal["adapt", "freeze", "pool"] = "adapt"


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
        self._carried_v: dict[str, torch.Tensor] = {}
        self._carried_step = 0.0
        self._opt: torch.optim.Optimizer | None = None
        self._opt_names: dict[int, str] = {}

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
        return self.optimizer_state()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        state = self.load_optimizer_state(state)
        if state:
            raise ValueError(f"strategy {self.name!r} carries no state, got {sorted(state)[:3]}")

    def lr_scale(self, ctx: Any) -> float:
        """This site's learning-rate factor: ``settings.site_lr_decay ** site_index`` when the strategy has that
        setting (the per-task decay of Mirzadeh et al., NeurIPS 2020, "Understanding the role of training regimes
        in continual learning": later sites take smaller steps from the arriving model), else 1."""
        return float(getattr(self.settings, "site_lr_decay", 1.0)) ** ctx.site_index

    def warmup_fraction(self, ctx: Any) -> float:
        """Share of this site's optimiser steps over which the learning rate ramps up linearly from 0:
        ``settings.site_warmup`` at sites after the first (a fresh AdamW's first steps move every weight by about
        the full learning rate whatever its gradient's size, a jolt to a trained network: the "stability gap" of
        De Lange et al., ICLR 2023), 0 at the first site and for strategies without that setting."""
        return float(getattr(self.settings, "site_warmup", 0.0)) if ctx.n_seen > 0 else 0.0

    # -- the optimiser's curvature estimate, carried from site to site (``settings.carry_optimizer``) ---------------

    def setup_optimizer(self, ctx: Any, opt: torch.optim.Optimizer) -> None:
        """With ``settings.carry_optimizer``, start AdamW's second-moment estimates (``exp_avg_sq``) at the values the
        previous site ended with, instead of zeros, and its step count where the previous site left it; the first
        moment (``exp_avg``) starts at zero. A fresh AdamW's first steps move every weight by about the full
        learning rate, however small its gradient. Here, with the bias corrections already spent, the first
        moment builds up from zero (the first step is about a tenth of a full one, nine tenths after some 20 steps:
        an implicit warm-up), and each weight's step is then scaled by its gradient history over earlier sites
        rather than by this site's first few gradients. The trainer calls this after creating the optimiser (a
        resumed checkpoint's state then replaces it)."""
        self._opt = opt
        self._opt_names = {id(p): n for n, p in ctx.model.named_parameters() if p.requires_grad}
        if not getattr(self.settings, "carry_optimizer", False) or not self._carried_v:
            return
        for group in opt.param_groups:
            for p in group["params"]:
                v = self._carried_v.get(self._opt_names.get(id(p), ""))
                if v is None or v.shape != p.shape:
                    continue
                on_device = bool(group.get("capturable") or group.get("fused"))  # as torch's AdamW makes its step
                step_dtype = torch.float32 if group.get("fused") else torch.get_default_dtype()
                opt.state[p] = {"step": torch.tensor(float(self._carried_step), dtype=step_dtype,
                                                     device=p.device if on_device else None),
                                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                "exp_avg_sq": v.to(p.device, p.dtype).clone()}

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        """``optim.exp_avg_sq.<param>`` and ``optim.step`` of the optimiser this site trained with (empty unless
        ``settings.carry_optimizer``): an average of squared gradients per weight, like EWC's Fisher diagonal."""
        if not getattr(self.settings, "carry_optimizer", False):
            return {}
        opt = getattr(self, "_opt", None)
        if opt is None:
            return {f"optim.exp_avg_sq.{n}": v for n, v in self._carried_v.items()} | (
                {"optim.step": torch.tensor(float(self._carried_step))} if self._carried_v else {})
        out: dict[str, torch.Tensor] = {}
        step = 0.0
        for group in opt.param_groups:
            for p in group["params"]:
                st = opt.state.get(p, {})
                if "exp_avg_sq" in st and id(p) in self._opt_names:
                    out[f"optim.exp_avg_sq.{self._opt_names[id(p)]}"] = st["exp_avg_sq"].detach().float().cpu().clone()
                    step = max(step, float(st["step"]))
        if out:
            out["optim.step"] = torch.tensor(step)
        return out

    def load_optimizer_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Take the ``optim.*`` entries of ``state``; return the rest."""
        self._carried_v = {k[len("optim.exp_avg_sq."):]: v for k, v in state.items() if k.startswith("optim.exp_avg_sq.")}
        self._carried_step = float(state["optim.step"]) if "optim.step" in state else 0.0
        return {k: v for k, v in state.items() if not k.startswith("optim.")}

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
