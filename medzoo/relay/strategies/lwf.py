"""Learning without forgetting (Li & Hoiem 2016): distil from the model as it arrived at this site.

:class:`Distillation` is the standalone regulariser (testable with a stand-in teacher, like Avalanche's LwF
test); :class:`LwF` is the hook adapter. The arriving model is the baton's own weights, so LwF carries no extra
tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from medzoo.core import SiteContext, StepOutput, Task
from medzoo.relay.strategies.base import Strategy


class Distillation:
    """``alpha * task.distill_loss(student_logits, teacher_logits)``, with the teacher frozen.

    Args:
        task: supplies the task's distillation loss (soft-label BCE for masks, KL for labels, ...).
        alpha: weight of the penalty.

    Example:
        >>> d = Distillation(task, alpha=1.0)          # doctest: +SKIP
        >>> d.set_teacher(arriving_model)               # doctest: +SKIP
        >>> d(batch, out)                               # doctest: +SKIP
    """

    def __init__(self, task: Task, alpha: float = 1.0) -> None:
        self.task = task
        self.alpha = alpha
        self.teacher: nn.Module | None = None

    def set_teacher(self, model: nn.Module) -> None:
        """Freeze a copy of ``model`` as the teacher (Avalanche's ``post_adapt``)."""
        t = copy.deepcopy(model).eval()
        for p in t.parameters():
            p.requires_grad_(False)
        self.teacher = t

    @torch.no_grad()
    def teacher_logits(self, batch: Mapping[str, Any]) -> Tensor:
        assert self.teacher is not None
        return self.task.step(self.teacher, batch).logits.detach()

    def __call__(self, batch: Mapping[str, Any], out: StepOutput) -> Tensor:
        """The penalty for one batch; a zero tensor (never a plain ``0``) when there is no teacher yet."""
        if self.teacher is None or self.alpha == 0:
            return out.logits.new_zeros(())
        return self.alpha * self.task.distill_loss(out.logits, self.teacher_logits(batch))


@dataclass(frozen=True)
class LwFSettings:
    """Attributes:
        alpha: weight of the distillation term.
        site_lr_decay: learning-rate factor per earlier site (site k trains at ``lr * site_lr_decay**k``; 1 = off).
        norm_stats: at sites after the first, ``"adapt"`` lets BatchNorm running statistics follow the new site's
            data (plain training); ``"freeze"`` keeps them as they arrived; ``"pool"`` trains at the
            sample-weighted mixture of the arriving and this site's statistics (see :meth:`Strategy.epoch_start`).
    """

    alpha: float = 1.0
    site_lr_decay: float = 1.0
    norm_stats: Literal["adapt", "freeze", "pool"] = "adapt"


class LwF(Strategy):
    """Distil from the arriving model at every site after the first."""

    name: ClassVar[str] = "lwf"
    Settings: ClassVar[type] = LwFSettings

    def __init__(self, settings: LwFSettings) -> None:
        super().__init__(settings)
        self.reg: Distillation | None = None

    def before_site(self, ctx: SiteContext) -> None:
        super().before_site(ctx)
        self.reg = Distillation(ctx.task, self.settings.alpha)
        if ctx.n_seen > 0:
            self.reg.set_teacher(ctx.model)

    def extra_loss(self, ctx: SiteContext, batch: Mapping[str, Any], out: StepOutput) -> Tensor | None:
        return self.reg(batch, out) if self.reg is not None and self.reg.teacher is not None else None

    def after_site(self, ctx: SiteContext) -> None:
        self.reg = None
