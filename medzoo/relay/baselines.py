"""Baselines of the literature, trained on the same sites with the same loop:

* single-site (local) models: each site alone;
* pooled central training: all sites' data in one place (the upper reference a relay tries to reach);
* cyclic weight transfer / CIIL (Chang et al. 2018; Sheller et al. 2018): a few epochs per visit, several cycles;
* FedAvg (McMahan et al. 2017), simulated rounds: local epochs at each site, then a sample-weighted average;
* an ensemble of the single-site models (:class:`LogitEnsemble`: the average of their outputs).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset

from medzoo.core import Task
from medzoo.relay.trainer import TrainConfig, train_site


def _average_outputs(outs: Sequence[Any]) -> Any:
    first = outs[0]
    if torch.is_tensor(first):
        return torch.stack([o.float() for o in outs]).mean(0)
    if isinstance(first, (tuple, list)):
        return type(first)(_average_outputs([o[i] for o in outs]) for i in range(len(first)))
    if isinstance(first, Mapping):
        return {k: _average_outputs([o[k] for o in outs]) for k in first}
    raise TypeError(f"cannot average model outputs of type {type(first).__name__}")


class LogitEnsemble(nn.Module):
    """Averages the raw outputs (logits) of several networks of the same architecture; works for any task whose
    model returns a tensor, or a tuple/list/dict of tensors.

    Example:
        >>> ens = LogitEnsemble([nn.Linear(2, 1), nn.Linear(2, 1)])
        >>> ens(torch.zeros(3, 2)).shape
        torch.Size([3, 1])
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return _average_outputs([m(*args, **kwargs) for m in self.members])


def fedavg_merge(states: Sequence[Mapping[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
    """Sample-weighted average of floating-point entries; integer buffers are taken from the first state.

    Example:
        >>> fedavg_merge([{"w": torch.tensor([0.0])}, {"w": torch.tensor([3.0])}], [2, 1])["w"]
        tensor([1.])
    """
    total = float(sum(weights))
    out: dict[str, Tensor] = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            out[k] = sum(float(w) / total * s[k].float() for s, w in zip(states, weights)).to(v.dtype)  # type: ignore[union-attr]
        else:
            out[k] = v.clone()
    return out


def train_single(task: Task, init: nn.Module, ds: Dataset[Any], cfg: TrainConfig, *, site: str, device: str,
                 progress: bool = False) -> nn.Module:
    """A copy of ``init`` trained on one site only."""
    net = copy.deepcopy(init)
    train_site(task, net, ds, cfg, site_name=f"single:{site}", device=device, progress=progress)
    return net


def train_pooled(task: Task, init: nn.Module, datasets: Sequence[Dataset[Any]], cfg: TrainConfig, *, device: str,
                 progress: bool = False) -> nn.Module:
    """A copy of ``init`` trained on all sites' data pooled (central training)."""
    net = copy.deepcopy(init)
    train_site(task, net, ConcatDataset(list(datasets)), cfg, site_name="pooled", device=device, progress=progress)
    return net


def train_cyclic(task: Task, init: nn.Module, datasets: Sequence[Dataset[Any]], cfg: TrainConfig, *, cycles: int,
                 device: str, progress: bool = False) -> nn.Module:
    """Cyclic weight transfer: ``cycles`` passes over the sites, ``max(1, epochs // cycles)`` epochs per visit."""
    net = copy.deepcopy(init)
    per_visit = max(1, cfg.epochs // max(1, cycles))
    for c in range(cycles):
        for i, ds in enumerate(datasets):
            vc = dataclasses.replace(cfg, epochs=per_visit, seed=cfg.seed + 1000 * c + i)
            train_site(task, net, ds, vc, site_name=f"cyclic c{c + 1} s{i + 1}", device=device, progress=progress)
    return net


def train_fedavg(task: Task, init: nn.Module, datasets: Sequence[Dataset[Any]], cfg: TrainConfig, *, rounds: int,
                 device: str, progress: bool = False) -> nn.Module:
    """Simulated FedAvg: ``rounds`` rounds of ``max(1, epochs // rounds)`` local epochs per site, then a
    sample-weighted average of the sites' weights."""
    glob = copy.deepcopy(init)
    local_epochs = max(1, cfg.epochs // max(1, rounds))
    sizes = [len(ds) for ds in datasets]  # type: ignore[arg-type]
    for r in range(rounds):
        states = []
        for i, ds in enumerate(datasets):
            net = copy.deepcopy(glob)
            lc = dataclasses.replace(cfg, epochs=local_epochs, seed=cfg.seed + 1000 * r + i)
            train_site(task, net, ds, lc, site_name=f"fedavg r{r + 1} s{i + 1}", device=device, progress=progress)
            states.append({k: v.detach().cpu() for k, v in net.state_dict().items()})
        glob.load_state_dict(fedavg_merge(states, sizes))
    return glob.eval()
