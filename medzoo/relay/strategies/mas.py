"""Memory aware synapses (Aljundi et al. 2018): importance = sensitivity of the output's squared L2 norm.

Unlike EWC it needs no labels: the importance is the mean absolute gradient of ``||f(x)||^2`` (the network's
logits), so it measures how much each weight moves the function itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from medzoo.core import SiteContext, Task
from medzoo.relay.strategies.base import iterate_batches
from medzoo.relay.strategies.ewc import ImportanceSettings, ImportanceStrategy, mean_gradient_statistic


def mas_importance(task: Task, model: nn.Module, dataset: Dataset[Any], *, device: torch.device,
                   batch_size: int = 8, max_batches: int = 32, seed: int = 0) -> dict[str, Tensor]:
    """Mean absolute gradient of the mean squared logits, per parameter (MAS importance)."""
    return mean_gradient_statistic(model, iterate_batches(dataset, batch_size, device, max_batches, seed),
                                   lambda batch: task.step(model, batch).logits.float().pow(2).mean(), torch.abs)


@dataclass(frozen=True)
class MASSettings(ImportanceSettings):
    """MAS's settings: those of :class:`~medzoo.relay.strategies.ewc.ImportanceSettings`, ``lam`` 1."""

    lam: float = 1.0


class MAS(ImportanceStrategy):
    """Memory aware synapses as a relay strategy (importances and anchors travel in the baton)."""

    name: ClassVar[str] = "mas"
    Settings: ClassVar[type] = MASSettings

    def compute_importance(self, ctx: SiteContext) -> dict[str, Tensor]:
        s = self.settings
        return mas_importance(ctx.task, ctx.model, ctx.train_dataset, device=ctx.device, batch_size=s.batch_size,
                              max_batches=s.max_batches)
