"""What every strategy shares: typed settings, tensor state for the baton, and a ledger note.

A strategy is a small hook object (see :class:`medzoo.core.RelayHook`): it implements only the hooks it needs.
Settings are a frozen dataclass whose ``Literal`` fields are checked by :func:`parse_settings`, so a typo is an
error that lists the allowed values, never a silently ignored option.
"""

from __future__ import annotations

import dataclasses
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
        """With ``settings.norm_stats == "freeze"``, every site after the first trains with the normalisation layers'
        running statistics fixed (BatchNorm in eval mode; its affine weights still learn): the statistics the
        earlier sites' data set stay in place, and training normalises exactly as inference will."""
        if getattr(self.settings, "norm_stats", "adapt") == "freeze" and ctx.n_seen > 0:
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


def freeze_norm_stats(model: nn.Module) -> int:
    """Put every BatchNorm / InstanceNorm-with-running-stats layer of ``model`` in eval mode (running statistics
    neither used from the batch nor updated); return how many layers were frozen."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            m.eval()
            n += 1
    return n


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's floating-point state (parameters and float buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
