"""Naive sequential fine-tuning ("institutional incremental learning", Sheller et al. 2018): no protection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from medzoo.relay.strategies.base import Strategy


@dataclass(frozen=True)
class NaiveSettings:
    """Naive fine-tuning has no settings."""


class Naive(Strategy):
    """Each site simply continues training the arriving model: the baseline that forgets.

    Example:
        >>> Naive(NaiveSettings()).state_dict()
        {}
    """

    name: ClassVar[str] = "naive"
    Settings: ClassVar[type] = NaiveSettings
