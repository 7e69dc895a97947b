"""How much training a relay simulation spends (:class:`Budget`) and the named budgets (:data:`BUDGETS`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from medzoo.errors import InputError

BudgetName = Literal["tiny", "small", "full"]


@dataclass(frozen=True)
class Budget:
    """How much training a simulation spends. ``None`` means "all samples".

    Attributes:
        epochs: epochs per site (relay, single-site, pooled); cyclic/FedAvg split them over cycles/rounds.
        max_train / max_test: cap on samples per site (fixed random subsets, the same for every method).
        cycles: cyclic-weight-transfer cycles. rounds: FedAvg rounds. gen_epochs: replay-generator epochs per site.
        n_boot: bootstrap resamples.
        lap_epochs: epochs at each position of a relay's site order (lap 1 trains the initial weights, later laps
            fine-tune the arriving model), e.g. ``(10, 4, 4)``; ``None``: ``epochs`` at every lap. Baselines keep
            ``epochs``: with ``sum(lap_epochs) == epochs * n_sites`` a relay takes as many optimiser steps as
            pooled training.
        augment: the training augmentation of every method: ``"standard"`` (the task's ``augment=True``) or a name
            from the task's ``augment_levels`` (e.g. fundus' ``"strong"``).
    """

    epochs: int
    max_train: int | None
    max_test: int | None
    cycles: int
    rounds: int
    gen_epochs: int
    n_boot: int
    batch_size: int = 4
    lr: float = 1e-3
    lap_epochs: tuple[int, ...] | None = None
    augment: str = "standard"

    def __post_init__(self) -> None:
        if self.lap_epochs is not None:  # a list from JSON or the command line: keep the dataclass hashable
            object.__setattr__(self, "lap_epochs", tuple(int(e) for e in self.lap_epochs))
            if not self.lap_epochs or min(self.lap_epochs) < 1:
                raise InputError(f"lap_epochs must be positive epoch counts, one per site; got {list(self.lap_epochs)}")
        if not isinstance(self.augment, str) or not self.augment:
            raise InputError(f"augment must be the name of an augmentation level, got {self.augment!r}")

    def epochs_at(self, lap: int) -> int:
        """Epochs of the relay's lap at 0-based position ``lap`` of the site order."""
        return self.epochs if self.lap_epochs is None else self.lap_epochs[lap]

    def as_json(self) -> dict[str, Any]:
        """The fields as JSON values (``lap_epochs`` a list), as results files store them."""
        d = asdict(self)
        if d["lap_epochs"] is not None:
            d["lap_epochs"] = list(d["lap_epochs"])
        return d


BUDGETS: dict[str, Budget] = {
    "tiny": Budget(epochs=2, max_train=8, max_test=8, cycles=2, rounds=2, gen_epochs=5, n_boot=200),
    "small": Budget(epochs=6, max_train=32, max_test=None, cycles=2, rounds=3, gen_epochs=15, n_boot=1000),
    "full": Budget(epochs=20, max_train=None, max_test=None, cycles=3, rounds=5, gen_epochs=40, n_boot=2000),
}
