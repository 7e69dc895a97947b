"""argparse value types shared by every command (a bad value is a usage error naming the option, before any work),
and the training options every training command takes."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    parse.__name__ = f"whole number >= {least}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def probability(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (e.g. a threshold)."""
    v = positive_float(text)
    if not v < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return v


def add_training_options(p: argparse.ArgumentParser, *, data: str = "the data",
                         device_help: str = "cpu, cuda or cuda:N (default cpu)") -> None:
    """--epochs, --batch-size, --lr, --seed, --device with the defaults of :class:`medzoo.relay.trainer.TrainConfig`."""
    p.add_argument("--epochs", type=positive_int, default=10, help=f"passes over {data} (>= 1; default 10)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples per step (>= 1; default 8)")
    p.add_argument("--lr", type=positive_float, default=1e-3,
                   help="peak learning rate (AdamW, cosine-decayed over the epochs; > 0; default 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seeds Python, NumPy and torch: shuffling and augmentation "
                   "(default 0)")
    p.add_argument("--device", default="cpu", help=device_help)
