"""The contracts every part of medzoo is written against.

* :class:`Task` — what a task module provides (datasets, model, loss, metrics, prediction). The relay trainer
  and the CLI only ever talk to this protocol, so they never branch on the task.
* :class:`RelayHook` — what a continual-learning strategy provides to the relay trainer (Avalanche-style
  plugins, tightened: hooks *return* values, they never reach into the trainer).
* :class:`TaskModel` — a trained network bound to its task: ``predict``, ``save``; what
  ``<task>.pretrained()`` and ``<task>.load()`` return.

Batches are dicts: ``{"image": FloatTensor[B, C, H, W], "target": Tensor, "id": list[str]}``; a task may add
keys (e.g. ``"fov"``) and its own ``step``/``evaluate`` read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn
    from torch.utils.data import Dataset

Split = Literal["train", "test", "all"]
TargetKind = Literal["mask", "label", "landmarks"]

MODEL_FORMAT = "medzoo.model/1"


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task.

    Attributes:
        name: registry name, e.g. ``"fundus-vessels"``.
        family: the task module, e.g. ``"fundus"``.
        target_kind: ``"mask"`` (segmentation), ``"label"`` (classification) or ``"landmarks"``.
        num_outputs: output channels / classes / landmarks.
        in_chans: input channels the network takes.
        input_size: (H, W) of a training sample.
        primary_metric: the key of :attr:`EvalResult.metrics` that relay reports compare (e.g. ``"dice"``).
        higher_is_better: direction of ``primary_metric``.
        classes: class or landmark names, in output order.
        synthetic: True when the task's built-in sites are procedurally generated; every number from them
            must then be labelled synthetic.
    """

    name: str
    family: str
    target_kind: TargetKind
    num_outputs: int
    in_chans: int
    input_size: tuple[int, int]
    primary_metric: str
    higher_is_better: bool = True
    classes: tuple[str, ...] = ()
    synthetic: bool = False


@dataclass
class StepOutput:
    """What :meth:`Task.step` returns: the task loss plus what strategies need (raw logits, the target)."""

    loss: Tensor
    logits: Tensor
    target: Tensor | None = None


def is_count_metric(name: str) -> bool:
    """Whether a metrics entry is a count (``n``, ``n_<class>``, ``<x>_classes``), not a score: shown as a whole
    number and left out of short summaries."""
    return name == "n" or name.startswith("n_") or name.endswith("_classes")


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one model on one dataset.

    Attributes:
        metrics: aggregate metrics (for segmentation: the mean of per-image values, as the literature reports).
        per_sample: per-image/case values of each metric that has them, in dataset order, for bootstrap CIs.
        ids: the sample ids, in the same order.
    """

    metrics: dict[str, float]
    per_sample: dict[str, list[float]] = field(default_factory=dict)
    ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "per_sample": self.per_sample, "ids": list(self.ids)}


@runtime_checkable
class Task(Protocol):
    """What a task module provides. Implementations live in ``medzoo/tasks/<family>/``.

    Optional, beyond the methods below: ``augment_levels`` (see :meth:`build_dataset`) and
    ``perturb_batch(batch, *, seed) -> batch``, a seeded copy of a training batch as another site might show it
    (image and targets moved together), which LwF's ``distill_inputs="perturbed"|"both"`` needs (the fundus tasks
    have it; LwF refuses the setting for a task without it); and
    ``distill_loss_where_teacher_agrees(student_logits, teacher_logits, target) -> Tensor``, :meth:`distill_loss`
    counted only on the outputs where the teacher's decision matches the batch's label, which LwF's
    ``distill_where="teacher_agrees"`` needs (the fundus tasks have it).
    """

    spec: TaskSpec

    def build_model(self, *, weights: str | Path | None = None, **arch: Any) -> nn.Module:
        """A fresh network (random init, ``pretrained=False``), or one loaded from a shipped weights name
        or a ``.safetensors`` path. Never downloads."""
        ...

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        """JSON-able builder arguments that rebuild ``model``'s architecture via ``build_model(**arch)``."""
        ...

    def builtin_sites(self) -> tuple[str, ...]:
        """Names of the sites :meth:`build_dataset` accepts as ``source`` (real sets or synthetic sites)."""
        ...

    def build_dataset(self, source: str | Path, split: Split, *, augment: bool = False) -> Dataset[Any]:
        """A dataset of one site: a built-in site name or a user folder in the task's documented layout.

        ``augment``: ``True`` for the task's training augmentation; a task with an ``augment_levels`` attribute (a
        tuple of names, the first the default) also takes one of those names, e.g. fundus' ``"strong"``.

        Raises:
            InputError: the folder is empty, files are unreadable or do not pair up (the message names them).
        """
        ...

    def step(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        """Forward + task loss for one training batch."""
        ...

    def distill_loss(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """Knowledge-distillation loss between two networks' logits on the same batch (for LwF / relay)."""
        ...

    def evaluate(self, model: nn.Module, dataset: Dataset[Any], *, device: str | torch.device = "cpu") -> EvalResult:
        """Metrics on a test dataset, computed as the task's literature reports them."""
        ...

    def replay_pack(self, batch: Mapping[str, Any], size: int) -> Tensor:
        """Image + target as one tensor ``(B, C_img + C_tgt, size, size)`` in [0, 1], for a replay generator."""
        ...

    def replay_unpack(self, x: Tensor) -> dict[str, Any]:
        """Inverse of :meth:`replay_pack`: a batch :meth:`step` accepts."""
        ...

    def wrap(self, model: nn.Module, meta: Mapping[str, Any] | None = None) -> TaskModel:
        """Bind a network to this task as a :class:`TaskModel` (predict, save)."""
        ...

    def predict_files(self, model: TaskModel, paths: Sequence[Path], out_dir: Path, **options: Any) -> list[Path]:
        """Run inference on input files and write results (masks, JSON, overlay PNGs) under ``out_dir``."""
        ...


def dataset_augment(task: Task, level: bool | str) -> bool | str:
    """The ``augment`` argument of ``task.build_dataset`` for a training-augmentation choice: ``True``/``False``
    unchanged, ``"standard"`` as ``True``, any other name only when it is one of the task's ``augment_levels``.

    Raises:
        InputError: a level the task does not have (before any data is read or anything written).
    """
    from medzoo.errors import InputError

    if isinstance(level, bool) or level == "standard":
        return True if level == "standard" else level
    levels = tuple(getattr(task, "augment_levels", ("standard",)))
    if level not in levels:
        raise InputError(f"task {task.spec.name} has no augmentation level {level!r}; it has {', '.join(levels)}")
    return level


class TaskModel:
    """A network bound to its task. Task modules subclass it to add ``predict`` and friends.

    Args:
        task: the task the network was trained for.
        net: the network (eval mode is set here).
        meta: model-card fields (training data, metrics, ...), saved along with the weights.
    """

    def __init__(self, task: Task, net: nn.Module, meta: Mapping[str, Any] | None = None) -> None:
        self.task = task
        self.net = net.eval()
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> TaskModel:
        self.net.to(device)
        return self

    def save(self, path: str | Path, *, half: bool = False) -> Path:
        """Write the model as a safetensors file that :func:`load_model` (and ``<task>.load``) read back."""
        return save_model(self.task, self.net, path, meta=self.meta, half=half)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task.spec.name!r}, params={sum(p.numel() for p in self.net.parameters())})"


def save_model(task: Task, net: nn.Module, path: str | Path, *, meta: Mapping[str, Any] | None = None, half: bool = False) -> Path:
    """Save ``net``'s state dict with the task name and architecture in the safetensors header (atomic)."""
    from safetensors.torch import save as st_save

    from medzoo.io import atomic_write_bytes

    state = {k: (v.detach().to("cpu").contiguous()) for k, v in net.state_dict().items()}
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    header = {
        "format": MODEL_FORMAT,
        "task": task.spec.name,
        "architecture": json.dumps(task.architecture(net), sort_keys=True),
        "meta": json.dumps(dict(meta or {}), sort_keys=True, default=str),
    }
    # the tensor data's sha256 travels in the header, so a file loaded by path checks itself (the data section of a
    # safetensors file does not depend on its header: the second serialisation lays the tensors out the same way)
    header[TENSORS_SHA256] = _data_sha256(st_save(state, metadata=header))
    return atomic_write_bytes(Path(path), st_save(state, metadata=header))


TENSORS_SHA256 = "tensors_sha256"


def _data_sha256(raw: bytes) -> str:
    """sha256 of a safetensors file's tensor data (the bytes after the length prefix and the JSON header)."""
    import hashlib

    return hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little"):]).hexdigest()


def read_model_file(path: str | Path) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Tensor]]:
    """Read a medzoo model file: ``(task_name, architecture, meta, state_dict)``; floats come back as fp32.

    A file whose header carries the sha256 of its tensor data (every file medzoo writes) is checked against it.
    Shipped weights are checked against their model card by :func:`medzoo.weights.verify`.

    Raises:
        WeightsError: not a safetensors file, truncated, not written by medzoo, or its tensor data do not match the
            checksum in its header.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    from medzoo.errors import WeightsError

    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: no such file")
    raw = p.read_bytes()
    try:
        state = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise WeightsError(f"{p}: not a readable safetensors file ({e})") from e
    if header.get("format") != MODEL_FORMAT:
        fmt = header.get("format")
        hint = (f"; it is a relay baton: export its model first (`medzoo relay export {p} --out model.safetensors`, "
                "with --key-file for a signed baton)") if str(fmt).startswith("medzoo.baton/") else ""
        raise WeightsError(f"{p}: not a medzoo model file (format {fmt!r}, expected {MODEL_FORMAT!r}){hint}")
    want = header.get(TENSORS_SHA256)
    if want is not None and _data_sha256(raw) != want:
        raise WeightsError(f"{p}: the tensor data do not match the sha256 in the file's header "
                           f"({_data_sha256(raw)[:12]}… vs {str(want)[:12]}…): the file is corrupt or was edited")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return header["task"], json.loads(header["architecture"]), json.loads(header.get("meta", "{}")), state


def _header(path: str | Path) -> dict[str, Any]:
    """The ``__metadata__`` of a safetensors file (reads only the header)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)).get("__metadata__", {}) or {}


def load_model(path: str | Path, *, expect_task: str | None = None) -> TaskModel:
    """Load any medzoo model file (or exported baton) as a :class:`TaskModel` of the task it names."""
    from medzoo._registry import get_task
    from medzoo.errors import WeightsError

    name, arch, meta, state = read_model_file(path)
    if expect_task is not None and name != expect_task:
        raise WeightsError(f"{path}: this model is for task {name!r}, not {expect_task!r}")
    if TENSORS_SHA256 not in _header(path):  # written before files carried their checksum: shipped weights, or unverifiable
        from medzoo.io import sha256_file
        from medzoo.weights import list_weights

        digest = sha256_file(path)
        card = next((w for w in list_weights() if w.sha256 == digest), None)
        if card is not None:  # a copy of shipped weights, byte for byte: it is what its card describes
            meta = card.to_json()
        else:
            import warnings

            from medzoo.errors import MedzooWarning

            warnings.warn(f"{path}: no checksum in the file's header (written by an older medzoo) and not a copy of "
                          "any shipped weights: its integrity cannot be verified", MedzooWarning, stacklevel=2)
    task = get_task(name)
    net = task.build_model(**arch)
    load_state_dict_strict(net, state, source=str(path))
    return task.wrap(net, meta)


def load_state_dict_strict(net: nn.Module, state: Mapping[str, Tensor], *, source: str) -> None:
    """Load ``state`` into ``net``; any missing or unexpected key is an error naming ``source`` (never a silent
    fall-back to random weights)."""
    from medzoo.errors import WeightsError

    missing, unexpected = net.load_state_dict(dict(state), strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{source}: weights do not fit the model (missing {len(missing)} keys, e.g. {missing[:3]}; "
            f"unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )


@dataclass(frozen=True)
class SiteContext:
    """What a relay hook sees at a site (frozen: hooks return values, they do not mutate the trainer).

    Attributes:
        task: the task being trained.
        model: the network being trained at this site.
        site_index: 0 for the first site of the relay.
        site_name: the site's name as given on the command line.
        device: where training runs.
        train_dataset: this site's training data (local only).
        n_seen: number of training samples seen at all earlier sites (from the ledger).
        epochs: epochs planned at this site.
    """

    task: Task
    model: nn.Module
    site_index: int
    site_name: str
    device: torch.device
    train_dataset: Dataset[Any]
    n_seen: int
    epochs: int


@runtime_checkable
class RelayHook(Protocol):
    """A continual-learning strategy, as hooks the relay trainer calls. Every hook is optional.

    * ``before_site(ctx)`` / ``after_site(ctx)`` — snapshot the arriving model, compute importances, ...
    * ``extra_loss(ctx, batch, out) -> Tensor | None`` — a penalty added to the task loss.
    * ``adapt_dataset(ctx, ds) -> Dataset`` — e.g. mix in replayed samples.
    * ``lr_scale(ctx) -> float`` — a factor on this site's learning rate (factors of several hooks multiply).
    * ``warmup_fraction(ctx) -> float`` — share of the site's steps with a linear learning-rate warm-up (the
      largest of the hooks' values counts).
    * ``setup_optimizer(ctx, opt)`` — called once the site's optimiser exists (e.g. to start it from carried state).
    * ``epoch_start(ctx, epoch)`` / ``epoch_end(ctx, epoch) -> state | None`` / ``after_step(ctx, batch, out)``.
    * ``state_dict() / load_state_dict(d)`` — tensors the strategy carries in the baton.
    """

    name: str
