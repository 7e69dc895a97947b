"""Learning without forgetting (Li & Hoiem 2016): distil from the model as it arrived at this site.

:class:`Distillation` is the standalone regulariser (testable with a stand-in teacher, like Avalanche's LwF
test); :class:`LwF` is the hook adapter. The arriving model is the baton's own weights, so LwF carries no extra
tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from medzoo.core import SiteContext, StepOutput, Task
from medzoo.relay.strategies.base import SiteSettings, Strategy, StrategyError, norm_layers


@contextmanager
def keep_norm_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside leave running normalisation statistics unchanged (momentum 0), training mode kept:
    an extra pass on perturbed images must not move the statistics inference will use."""
    saved = [(m, m.momentum) for _, m in norm_layers(model)]
    for m, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in saved:
            m.momentum = mom


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

    def __init__(self, task: Task, alpha: float = 1.0, where: Literal["all", "teacher_agrees"] = "all") -> None:
        self.task = task
        self.alpha = alpha
        self.where = where
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
        teacher = self.teacher_logits(batch)
        if self.where == "teacher_agrees":
            return self.alpha * self.task.distill_loss_where_teacher_agrees(  # type: ignore[attr-defined]
                out.logits, teacher, out.target)
        return self.alpha * self.task.distill_loss(out.logits, teacher)


@dataclass(frozen=True)
class LwFSettings(SiteSettings):
    """The site settings of :class:`~medzoo.relay.strategies.base.SiteSettings`, and:

    Attributes:
        alpha: weight of the distillation term.
        alpha_scale: ``"fixed"`` uses ``alpha`` at every site; ``"samples"`` multiplies it by ``N_prev / n_k`` (the
            samples all earlier sites trained on over this site's), so that the site's objective weighs the earlier
            sites, stood for by the arriving model, and this one by their sample counts, as pooled training does
            (the weighting of the Relay Learning recipe's merge). With equal sites, site k then distils at ``(k-1) * alpha``.
        distill_inputs: what the distillation term sees. ``"batch"``: the training batch itself (Li & Hoiem).
            ``"perturbed"``: a copy of the batch that went through the task's ``perturb_batch`` (for fundus the
            strong training augmentation: scale, rotation, brightness/contrast/gamma, blur/down-scaling, noise),
            so the arriving model's outputs are kept over a wider range of appearances than this site's own
            (earlier sites' cameras), while the task loss still sees the site's batch as plain training does.
            ``"both"``: the mean of the two terms. Costs one more forward and backward pass per step; needs a
            task with ``perturb_batch``.
        distill_where: which outputs the distillation term counts. ``"all"``: every one (Li & Hoiem).
            ``"teacher_agrees"``: only those where the arriving model's decision matches this site's label (for
            fundus: pixels whose thresholded vessel probability equals the mask), so the term keeps what the
            new site's labels confirm and never pulls against them; where they disagree the task loss alone
            teaches. Needs a task with ``distill_loss_where_teacher_agrees``.
    """

    alpha: float = 1.0
    alpha_scale: Literal["fixed", "samples"] = "fixed"
    distill_inputs: Literal["batch", "perturbed", "both"] = "batch"
    distill_where: Literal["all", "teacher_agrees"] = "all"


class LwF(Strategy):
    """Distil from the arriving model at every site after the first."""

    name: ClassVar[str] = "lwf"
    Settings: ClassVar[type] = LwFSettings

    def __init__(self, settings: LwFSettings) -> None:
        super().__init__(settings)
        self.reg: Distillation | None = None
        self._note: dict[str, Any] = {}

    def before_site(self, ctx: SiteContext) -> None:
        super().before_site(ctx)
        self.reg = Distillation(ctx.task, self.site_alpha(ctx), self.settings.distill_where)
        self._note = {"distill_alpha": self.reg.alpha} if self.settings.alpha_scale != "fixed" and ctx.n_seen > 0 else {}
        if self.settings.distill_inputs != "batch" and not callable(getattr(ctx.task, "perturb_batch", None)):
            raise StrategyError(f"lwf distill_inputs={self.settings.distill_inputs}: task {ctx.task.spec.name} has no "
                                "perturb_batch; use distill_inputs=batch")
        if self.settings.distill_where != "all" and not callable(
                getattr(ctx.task, "distill_loss_where_teacher_agrees", None)):
            raise StrategyError(f"lwf distill_where={self.settings.distill_where}: task {ctx.task.spec.name} has no "
                                "distill_loss_where_teacher_agrees; use distill_where=all")
        if ctx.n_seen > 0:
            self.reg.set_teacher(ctx.model)

    def site_alpha(self, ctx: SiteContext) -> float:
        """The distillation weight at this site (``alpha``, scaled by ``N_prev / n_k`` with ``alpha_scale="samples"``)."""
        if self.settings.alpha_scale == "fixed":
            return float(self.settings.alpha)
        n_k = len(ctx.train_dataset)  # type: ignore[arg-type]
        return float(self.settings.alpha) * ctx.n_seen / max(1, n_k)

    def extra_loss(self, ctx: SiteContext, batch: Mapping[str, Any], out: StepOutput) -> Tensor | None:
        if self.reg is None or self.reg.teacher is None:
            return None
        mode = self.settings.distill_inputs
        if mode == "batch":
            return self.reg(batch, out)
        # the view's randomness comes from torch's generator, which the trainer reseeds every epoch (resumable)
        view = ctx.task.perturb_batch(batch, seed=int(torch.randint(0, 2**31 - 1, ())))  # type: ignore[attr-defined]
        with keep_norm_stats(ctx.model):
            perturbed = self.reg(view, ctx.task.step(ctx.model, view))
        return perturbed if mode == "perturbed" else 0.5 * (self.reg(batch, out) + perturbed)

    def after_site(self, ctx: SiteContext) -> None:
        self.reg = None

    def ledger_note(self) -> dict[str, Any]:
        return dict(self._note)
