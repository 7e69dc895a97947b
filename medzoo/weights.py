"""Shipped weights: a typed descriptor per file in ``weights/``, sha256-checked loading, and saving.

Each shipped weight is two files in ``weights/``: ``<name>.safetensors`` (a medzoo model file, fp16) and
``<name>.json``, its model card. The card is the :class:`WeightsMeta` below as JSON, including the sha256 the
loader checks. Listing weights reads only the JSON cards (no torch import). Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medzoo.errors import WeightsError

if TYPE_CHECKING:
    from medzoo.core import Task, TaskModel


def weights_dir() -> Path:
    """The folder of shipped weights: inside the installed package (wheel), else the source tree's ``weights/``."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_weights", here.parent / "weights"):
        if cand.is_dir():
            return cand
    raise WeightsError(f"no shipped weights folder found (looked in {here / '_weights'} and {here.parent / 'weights'})")


@dataclass(frozen=True)
class WeightsMeta:
    """A model card. Required fields first; every shipped weight must fill them (a test checks).

    Attributes:
        name: weights name, e.g. ``"fundus-vessels"``; the files are ``<name>.safetensors`` / ``<name>.json``.
        task: registry name of the task.
        file: safetensors file name, relative to ``weights/``.
        sha256: checksum of that file; loading refuses a mismatch.
        architecture: builder arguments (``task.build_model(**architecture)`` rebuilds the network).
        num_params: parameter count (a test recounts it).
        input: input specification (channels, size, value range, spacing, ...).
        preprocessing: what ``predict`` does before the network, in words.
        classes: output classes or landmarks, in order.
        training_data: data sets and splits the weights saw.
        sites: training sites, in training order.
        metrics: ``{test set: {metric: value}}``, measured on held-out data only.
        metrics_command: the command that measured ``metrics``.
        recipe: the command that reproduces the weights.
        intended_use: what the weights are for, and not for.
        license: licence of the weights.
        data_terms: the training data's terms of use.
        synthetic: True when trained on synthetic data (then the card's ``summary`` starts with "SYNTHETIC").
        summary: one-paragraph description; first line of the card.
        training_cost: CPU/GPU time the recipe took, and on what.
        extra: anything task-specific (e.g. ``spacing_mm`` for landmarks, thresholds).
    """

    name: str
    task: str
    file: str
    sha256: str
    architecture: dict[str, Any]
    num_params: int
    input: dict[str, Any]
    preprocessing: str
    classes: list[str]
    training_data: str
    sites: list[str]
    metrics: dict[str, dict[str, float]]
    metrics_command: str
    recipe: str
    intended_use: str
    license: str
    data_terms: str
    synthetic: bool
    summary: str
    training_cost: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, path: str | Path) -> WeightsMeta:
        p = Path(path)
        try:
            raw = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise WeightsError(f"{p}: unreadable model card ({e})") from e
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [n for n in required if n not in raw]
        if missing or set(raw) - known:
            raise WeightsError(f"{p}: model card missing fields {missing} or has unknown fields {sorted(set(raw) - known)}")
        return cls(**raw)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def path(self) -> Path:
        return weights_dir() / self.file


def list_weights() -> list[WeightsMeta]:
    """All shipped model cards, sorted by name. Reads JSON only."""
    try:
        d = weights_dir()
    except WeightsError:
        return []
    return [WeightsMeta.from_json(p) for p in sorted(d.glob("*.json"))]


def get_weights(name: str) -> WeightsMeta:
    """The model card of shipped weights ``name``.

    Raises:
        WeightsError: no such shipped weights (the message lists the available ones).
    """
    for w in list_weights():
        if w.name == name:
            return w
    raise WeightsError(f"no shipped weights named {name!r}; available: {', '.join(w.name for w in list_weights()) or 'none'}")


def verify(meta: WeightsMeta) -> Path:
    """Check the weights file exists and matches its card's sha256; return its path."""
    from medzoo.io import sha256_file

    p = meta.path
    if not p.is_file():
        raise WeightsError(f"{p}: shipped weights file is missing (model card {meta.name}.json names it)")
    digest = sha256_file(p)
    if digest != meta.sha256:
        raise WeightsError(f"{p}: sha256 mismatch (file {digest[:12]}…, model card {meta.sha256[:12]}…): the file is corrupt or was replaced")
    return p


def load_pretrained(task: Task, name: str) -> TaskModel:
    """Load shipped weights ``name`` for ``task``, sha256-checked, as a :class:`~medzoo.core.TaskModel`."""
    from medzoo.core import load_state_dict_strict, read_model_file

    meta = get_weights(name)
    if meta.task != task.spec.name:
        raise WeightsError(f"shipped weights {name!r} are for task {meta.task!r}, not {task.spec.name!r}")
    path = verify(meta)
    _, arch, _, state = read_model_file(path)
    net = task.build_model(**arch)
    load_state_dict_strict(net, state, source=str(path))
    return task.wrap(net, meta.to_json())


def write_card(meta: WeightsMeta, folder: str | Path | None = None) -> Path:
    """Write ``meta`` as ``<folder>/<name>.json`` (atomic)."""
    from medzoo.io import atomic_write_json

    return atomic_write_json(Path(folder or weights_dir()) / f"{meta.name}.json", meta.to_json())
