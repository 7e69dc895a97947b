"""Relay learning: one trainer, strategies as hooks, the baton file, baselines and forgetting reports.

Public API (imported lazily, so ``import medzoo.relay`` stays light)::

    from medzoo.relay import api                       # start, train, inspect, evaluate, verify, export, finetune
    from medzoo.relay.strategies import make_strategy, list_strategies
    from medzoo.relay.baton import Baton
    from medzoo.relay.simulate import simulate         # the simulation study (accuracy matrix, BWT, baselines)
    from medzoo.relay.trainer import TrainConfig, train_site
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "start": "medzoo.relay.api", "train": "medzoo.relay.api", "inspect": "medzoo.relay.api",
    "evaluate": "medzoo.relay.api", "verify": "medzoo.relay.api", "export": "medzoo.relay.api",
    "finetune": "medzoo.relay.api", "Baton": "medzoo.relay.baton", "make_strategy": "medzoo.relay.strategies",
    "list_strategies": "medzoo.relay.strategies", "simulate": "medzoo.relay.simulate",
    "TrainConfig": "medzoo.relay.trainer", "train_site": "medzoo.relay.trainer",
}

#: The strategy a relay, a simulation or a fine-tuning uses when none is named: LwF, the relay strategy measured best
#: on the real fundus relay (docs/relay.md) and the one the shipped mediastinum and midline weights were relayed with.
DEFAULT_STRATEGY = "lwf"

__all__ = sorted([*_LAZY, "DEFAULT_STRATEGY"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medzoo.relay' has no attribute {name!r}")
