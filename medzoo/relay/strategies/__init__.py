"""Continual-learning strategies for the relay trainer, as small hook objects.

Example:
    >>> from medzoo.relay.strategies import list_strategies, make_strategy
    >>> list_strategies()
    ['ewc', 'lwf', 'mas', 'naive', 'relay']
    >>> make_strategy("ewc", lam=50).settings.lam
    50.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from medzoo.relay.strategies.base import SiteSettings, Strategy, StrategyError, parse_settings, setting_choices
from medzoo.relay.strategies.ewc import EWC, QuadraticPenalty, fisher_diagonal
from medzoo.relay.strategies.lwf import Distillation, LwF
from medzoo.relay.strategies.mas import MAS, mas_importance
from medzoo.relay.strategies.naive import Naive
from medzoo.relay.strategies.relay import Relay, weighted_merge

_STRATEGIES: dict[str, type[Strategy]] = {c.name: c for c in (Naive, EWC, LwF, MAS, Relay)}


def list_strategies() -> list[str]:
    """Names accepted by :func:`make_strategy`, sorted."""
    return sorted(_STRATEGIES)


def strategy_defaults(name: str) -> dict[str, Any]:
    """Default settings of strategy ``name`` as a dict, in the order of :func:`strategy_choices` (the strategy's own
    settings first, then the :class:`SiteSettings` it inherits)."""
    d = dataclasses.asdict(_cls(name).Settings())
    return {k: d[k] for k in strategy_choices(name)}


def strategy_choices(name: str) -> dict[str, str]:
    """What each setting of strategy ``name`` accepts, in words (choices, or the number's range)."""
    return setting_choices(_cls(name).Settings)


def _cls(name: str) -> type[Strategy]:
    if name not in _STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; known: {', '.join(list_strategies())}")
    return _STRATEGIES[name]


def make_strategy(name: str, **opts: Any) -> Strategy:
    """A fresh strategy hook object with its settings (strings from the CLI are converted and checked).

    Raises:
        ValueError: unknown strategy or option, or a value outside the option's allowed choices or range.
    """
    cls = _cls(name)
    return cls(parse_settings(cls.Settings, opts))


def stored_strategy(name: str, settings: Mapping[str, Any]) -> Strategy:
    """The strategy a baton records, rebuilt with its stored settings: as :func:`make_strategy`, but numeric ranges
    are not checked, so a baton written before a range was enforced still loads (new relays are checked at start)."""
    cls = _cls(name)
    return cls(parse_settings(cls.Settings, settings, check_ranges=False))


def parse_strategy_opts(pairs: Iterable[str]) -> dict[str, dict[str, str]]:
    """Command-line ``STRATEGY.KEY=VALUE`` settings as ``{strategy: {key: value}}`` (values stay strings, converted
    and checked by :func:`make_strategy`; ``-`` in a key reads as ``_``).

    Raises:
        ValueError: an item that is not ``STRATEGY.KEY=VALUE``.

    Example:
        >>> parse_strategy_opts(["lwf.distill-inputs=both", "ewc.lam = 100"])
        {'lwf': {'distill_inputs': 'both'}, 'ewc': {'lam': '100'}}
    """
    out: dict[str, dict[str, str]] = {}
    for p in pairs:
        key, eq, val = p.partition("=")
        strat, dot, k = key.partition(".")
        if not eq or not dot or not strat.strip() or not k.strip():
            raise ValueError(f"--opt expects STRATEGY.KEY=VALUE, got {p!r}")
        out.setdefault(strat.strip(), {})[k.strip().replace("-", "_")] = val.strip()
    return out


__all__ = ["EWC", "MAS", "Distillation", "LwF", "Naive", "QuadraticPenalty", "Relay", "SiteSettings", "Strategy", "StrategyError",
           "fisher_diagonal",
           "list_strategies", "make_strategy", "mas_importance", "parse_strategy_opts", "stored_strategy", "strategy_choices", "strategy_defaults", "weighted_merge"]
