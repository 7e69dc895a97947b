"""Elastic weight consolidation (Kirkpatrick et al. 2017), online form (Schwarz et al. 2018).

The maths is in :class:`QuadraticPenalty` (shared with MAS) and :func:`fisher_diagonal`; :class:`EWC` is the
hook adapter that carries the importances and anchor weights in the baton.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from medzoo.core import SiteContext, StepOutput, Task
from medzoo.relay.strategies.base import SiteSettings, Strategy, iterate_batches


class QuadraticPenalty:
    """``lam/2 * sum_i F_i (p_i - p*_i)^2``: the EWC / MAS / SI penalty, a standalone callable.

    Args:
        importance: per-parameter importance ``F`` (same names/shapes as ``model.named_parameters()``).
        anchor: the weights ``p*`` to stay close to.
        lam: strength.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> pen = QuadraticPenalty({n: torch.ones_like(p) for n, p in net.named_parameters()},
        ...                        {n: p.detach().clone() for n, p in net.named_parameters()}, lam=1.0)
        >>> float(pen(net))
        0.0
    """

    def __init__(self, importance: Mapping[str, Tensor], anchor: Mapping[str, Tensor], lam: float) -> None:
        self.importance = dict(importance)
        self.anchor = dict(anchor)
        self.lam = lam

    def __call__(self, model: nn.Module) -> Tensor:
        total: Tensor | None = None
        for n, p in model.named_parameters():
            if n in self.importance:
                f = self.importance[n].to(p.device)
                a = self.anchor[n].to(p.device)
                term = (f * (p - a).pow(2)).sum()
                total = term if total is None else total + term
        if total is None:
            return torch.zeros((), device=next(model.parameters()).device)
        return 0.5 * self.lam * total


def mean_gradient_statistic(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                            objective: Callable[[Mapping[str, Any]], Tensor],
                            statistic: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
    """Per trainable parameter, the mean over ``batches`` of ``statistic`` of the gradient of ``objective(batch)``,
    with the model in eval mode (its training state is restored after): the importance estimate of EWC
    (squared gradients of the task loss) and MAS (absolute gradients of the output's squared norm)."""
    was_training = model.training
    model.eval()
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    n_batches = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        objective(batch).backward()
        for n, p in model.named_parameters():
            if p.grad is not None and n in total:
                total[n] += statistic(p.grad.detach())
        n_batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: t / max(1, n_batches) for n, t in total.items()}


def fisher_diagonal(task: Task, model: nn.Module, dataset: Dataset[Any], *, device: torch.device,
                    batch_size: int = 8, max_batches: int = 32, seed: int = 0) -> dict[str, Tensor]:
    """Empirical Fisher diagonal: mean over batches of the squared gradient of the task loss.

    Uses batch gradients (not per-sample ones) to stay affordable on CPU; the scale therefore depends on the
    batch size, which ``lam`` absorbs.
    """
    return mean_gradient_statistic(model, iterate_batches(dataset, batch_size, device, max_batches, seed),
                                   lambda batch: task.step(model, batch).loss, lambda g: g.pow(2))


@dataclass(frozen=True)
class ImportanceSettings(SiteSettings):
    """The site settings of :class:`~medzoo.relay.strategies.base.SiteSettings`, and those of a quadratic penalty
    on moving important weights (EWC, MAS):

    Attributes:
        lam: penalty strength.
        mode: ``"online"`` decays the old importance by ``gamma`` before adding the new site's; ``"sum"`` adds.
        gamma: decay of the online form.
        max_batches: batches used to estimate the importances at the end of a site.
        batch_size: batch size of that estimate.
    """

    lam: float = 1000.0
    mode: Literal["online", "sum"] = "online"
    gamma: float = 1.0
    max_batches: int = 32
    batch_size: int = 8


@dataclass(frozen=True)
class EWCSettings(ImportanceSettings):
    """EWC's settings: those of :class:`ImportanceSettings`, ``lam`` 1000 (the Fisher diagonal is small)."""


class ImportanceStrategy(Strategy):
    """Hook adapter shared by EWC and MAS: penalise moving important weights; update importances after a site.

    When a model arrives with earlier training (``n_seen > 0``) but no carried importances (``finetune`` of a
    pretrained model), the importances are estimated at the arriving weights on the new site's data: an
    approximation, since the earlier data are not available.
    """

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.importance: dict[str, Tensor] = {}
        self.anchor: dict[str, Tensor] = {}
        self.penalty: QuadraticPenalty | None = None

    def compute_importance(self, ctx: SiteContext) -> dict[str, Tensor]:
        raise NotImplementedError

    def before_site(self, ctx: SiteContext) -> None:
        super().before_site(ctx)
        if not self.importance and ctx.n_seen > 0:
            self.importance = self.compute_importance(ctx)
            self.anchor = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if n in self.importance}
        self.penalty = QuadraticPenalty(self.importance, self.anchor, self.settings.lam) if self.importance else None

    def extra_loss(self, ctx: SiteContext, batch: Mapping[str, Any], out: StepOutput) -> Tensor | None:
        return self.penalty(ctx.model) if self.penalty is not None else None

    def after_site(self, ctx: SiteContext) -> None:
        new = self.compute_importance(ctx)
        decay = self.settings.gamma if self.settings.mode == "online" else 1.0
        self.importance = {n: (decay * self.importance[n].to(f.device) + f) if n in self.importance else f
                           for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if n in self.importance}

    def state_dict(self) -> dict[str, Tensor]:
        out = {f"importance.{n}": t.detach().cpu() for n, t in self.importance.items()}
        out.update({f"anchor.{n}": t.detach().cpu() for n, t in self.anchor.items()})
        return out | self.optimizer_state()

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        state = self.load_optimizer_state(state)
        self.importance = {k[len("importance."):]: v for k, v in state.items() if k.startswith("importance.")}
        self.anchor = {k[len("anchor."):]: v for k, v in state.items() if k.startswith("anchor.")}
        bad = [k for k in state if not k.startswith(("importance.", "anchor."))]
        if bad or set(self.importance) != set(self.anchor):
            raise ValueError(f"{self.name} state does not pair importances with anchors (e.g. {bad[:3]})")


class EWC(ImportanceStrategy):
    """Elastic weight consolidation: importance = empirical Fisher diagonal of the task loss."""

    name: ClassVar[str] = "ewc"
    Settings: ClassVar[type] = EWCSettings

    def compute_importance(self, ctx: SiteContext) -> dict[str, Tensor]:
        s = self.settings
        return fisher_diagonal(ctx.task, ctx.model, ctx.train_dataset, device=ctx.device, batch_size=s.batch_size,
                               max_batches=s.max_batches)


__all__ = ["EWC", "EWCSettings", "ImportanceSettings", "ImportanceStrategy", "QuadraticPenalty", "fisher_diagonal",
           "mean_gradient_statistic"]
