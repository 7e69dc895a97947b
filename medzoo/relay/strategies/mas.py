"""Memory aware synapses (Aljundi et al. 2018): importance = sensitivity of the output's squared L2 norm.

Unlike EWC it needs no labels: the importance is the mean absolute gradient of ``||f(x)||^2`` (the network's
logits), so it measures how much each weight moves the function itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from medzoo.core import SiteContext, Task
from medzoo.relay.strategies.base import SiteSettings, iterate_batches
from medzoo.relay.strategies.ewc import ImportanceStrategy


def mas_importance(task: Task, model: nn.Module, dataset: Dataset[Any], *, device: torch.device,
                   batch_size: int = 8, max_batches: int = 32, seed: int = 0) -> dict[str, Tensor]:
    """Mean absolute gradient of the mean squared logits, per parameter (MAS importance)."""
    was_training = model.training
    model.eval()
    imp = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    n_batches = 0
    for batch in iterate_batches(dataset, batch_size, device, max_batches, seed):
        model.zero_grad(set_to_none=True)
        logits = task.step(model, batch).logits
        logits.float().pow(2).mean().backward()
        for n, p in model.named_parameters():
            if p.grad is not None and n in imp:
                imp[n] += p.grad.detach().abs()
        n_batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: v / max(1, n_batches) for n, v in imp.items()}


@dataclass(frozen=True)
class MASSettings(SiteSettings):
    """The site settings of :class:`~medzoo.relay.strategies.base.SiteSettings`, and:

    Attributes:
        lam: penalty strength.
        mode: ``"online"`` decays old importance by ``gamma``; ``"sum"`` adds.
        gamma: decay.
        max_batches: batches of the importance estimate.
        batch_size: batch size of that estimate.
    """

    lam: float = 1.0
    mode: Literal["online", "sum"] = "online"
    gamma: float = 1.0
    max_batches: int = 32
    batch_size: int = 8


class MAS(ImportanceStrategy):
    """Memory aware synapses as a relay strategy (importances and anchors travel in the baton)."""

    name: ClassVar[str] = "mas"
    Settings: ClassVar[type] = MASSettings

    def compute_importance(self, ctx: SiteContext) -> dict[str, Tensor]:
        s = self.settings
        return mas_importance(ctx.task, ctx.model, ctx.train_dataset, device=ctx.device, batch_size=s.batch_size,
                              max_batches=s.max_batches)
