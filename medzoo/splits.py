"""Whether a site's test split is held out from its training split.

A built-in site keeps its test samples apart; a user folder may not (a fundus folder without ``split.csv`` puts
every image in every split). A result on samples the model trained on must never be reported as a held-out one:
``medzoo evaluate``, ``relay train``/``evaluate`` and ``relay simulate`` ask these helpers before measuring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sample_ids(ds: Any) -> list[str] | None:
    """The sample ids a dataset names without loading images (an ``ids`` list, or ``records`` with an ``id``); else
    None."""
    ids = getattr(ds, "ids", None)
    if isinstance(ids, (list, tuple)):
        return [str(i) for i in ids]
    records = getattr(ds, "records", None)
    if isinstance(records, (list, tuple)) and all(hasattr(r, "id") for r in records):
        return [str(r.id) for r in records]
    return None


def shared_samples(a: Any, b: Any) -> int | None:
    """How many samples of dataset ``b`` are also in dataset ``a``, by :func:`sample_ids` (None when either names
    none). A site folder without a split file (fundus) puts every sample in every split: its 'test' split then
    shares every sample with its 'train' split, and a result on it is no held-out one."""
    ids_a, ids_b = sample_ids(a), sample_ids(b)
    if ids_a is None or ids_b is None:
        return None
    return len(set(ids_a) & set(ids_b))


def shared_with_train(task: Any, data: str | Path, ds: Any) -> int | None:
    """How many samples of ``ds`` (a split of ``data`` other than ``"train"``) are also in ``data``'s training split
    (None where the datasets name no ids or ``data`` has no training split): nonzero means a result on ``ds`` is no
    held-out one for a model trained on ``data``."""
    from medzoo.errors import InputError

    try:
        return shared_samples(task.build_dataset(data, "train"), ds)
    except InputError:  # no training split: nothing shared
        return None


def not_held_out(split: str, train_split: str, shared: int, n: int, *, whose: str = "this site's") -> str:
    """Why a result is no held-out one, in words (no path: relay ledgers travel to other sites)."""
    return (f"{shared} of the {n} samples of {whose} {split!r} split are also in its {train_split!r} split (a "
            f"folder without a split file puts every sample in every split)")
