"""``MediastinumTask``: the Task protocol for mediastinal mass classification on chest CT."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from medzoo.core import EvalResult, StepOutput, TaskSpec
from medzoo.errors import InputError
from medzoo.tasks.mediastinum.classifier import MediastinumClassifier
from medzoo.tasks.mediastinum.dataset import REQUIRED_COLUMNS, FolderSite, SyntheticSite
from medzoo.tasks.mediastinum.generator import CLASSES, SITES, case_seed, generate_case, site_labels
from medzoo.tasks.mediastinum.loss import classification_loss, distill_kl
from medzoo.tasks.mediastinum.metric import classification_metrics, confusion_matrix
from medzoo.tasks.mediastinum.model import DEFAULT_BACKBONE, MediastinumNet, build_net
from medzoo.tasks.mediastinum.preprocess import Mode, Preprocess


class MediastinumTask:
    """Classify a mediastinal mass (thymoma, lymphoma, teratoma, neurogenic tumour, cyst) from a chest CT volume
    and a box (or mask) around the mass. Built-in sites are SYNTHETIC (see :data:`SITES`).

    Args:
        mode: input channels (see :class:`~medzoo.tasks.mediastinum.preprocess.Preprocess`).
        backbone: timm backbone of new networks.
        loss: ``"ce"`` (class-weighted cross-entropy, default) or ``"focal"``.

    Example:
        >>> from medzoo import get_task
        >>> task = get_task("mediastinum")
        >>> task.spec.classes
        ('thymoma', 'lymphoma', 'teratoma', 'neurogenic', 'cyst')
    """
    predict_options: tuple[str, ...] = ("bbox", "mask", "spacing")  # the input options predict_files uses

    def __init__(self, mode: Mode = "slices+windows", backbone: str = DEFAULT_BACKBONE,
                 loss: Literal["ce", "focal"] = "ce") -> None:
        self.preprocess = Preprocess(mode=mode)
        self.backbone = backbone
        self.loss_kind = loss
        self.spec = TaskSpec(name="mediastinum", family="mediastinum", target_kind="label", num_outputs=len(CLASSES),
                             in_chans=self.preprocess.channels, input_size=(self.preprocess.size, self.preprocess.size),
                             primary_metric="auroc_macro", higher_is_better=True, classes=CLASSES, synthetic=True)

    # -- model --------------------------------------------------------------------------------------------
    def build_model(self, *, weights: str | Path | None = None, **arch: Any) -> nn.Module:
        """A fresh :class:`MediastinumNet` (random init), or one loaded from shipped weights / a model file."""
        if weights is not None:
            from medzoo.core import load_state_dict_strict, read_model_file
            from medzoo.weights import load_pretrained

            if Path(str(weights)).suffix == ".safetensors" or Path(str(weights)).exists():
                name, a, _, state = read_model_file(weights)
                if name != self.spec.name:
                    from medzoo.errors import WeightsError

                    raise WeightsError(f"{weights}: this model is for task {name!r}, not {self.spec.name!r}")
                net = build_net(**a)
                load_state_dict_strict(net, state, source=str(weights))
                return net
            return load_pretrained(self, str(weights)).net
        arch.setdefault("backbone", self.backbone)
        arch.setdefault("preprocess", self.preprocess)
        return build_net(**arch)

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        if not isinstance(model, MediastinumNet):
            raise TypeError(f"expected a MediastinumNet, got {type(model).__name__}")
        return model.architecture()

    # -- data ---------------------------------------------------------------------------------------------
    def builtin_sites(self) -> tuple[str, ...]:
        return tuple(SITES)

    def build_dataset(self, source: str | Path, split: str, *, augment: bool = False) -> Dataset[Any]:
        """A built-in SYNTHETIC site (``"synth-a"`` ... ``"synth-d"``, test-only ``"synth-x"``) or a folder with
        ``labels.csv`` (see :mod:`medzoo.tasks.mediastinum.dataset`)."""
        if split not in ("train", "test", "all"):
            raise InputError(f"split must be 'train', 'test' or 'all', got {split!r}")
        if isinstance(source, str) and source in SITES:
            return SyntheticSite(source, split, self.preprocess, augment=augment)
        p = Path(source)
        if p.is_dir():
            return FolderSite(p, split, self.preprocess, augment=augment)
        raise InputError(f"neither a built-in site ({', '.join(SITES)}) nor a folder", p)

    def write_site(self, site: str, split: str, out_dir: str | Path, n: int | None = None) -> int:
        """Write built-in SYNTHETIC site ``site`` to ``out_dir`` in the user layout (NIfTI + labels.csv).

        Returns:
            The number of cases written.
        """
        from medzoo.io import atomic_write_bytes
        from medzoo.tasks.mediastinum.volume_io import write_nifti

        if site not in SITES:
            raise InputError(f"unknown synthetic site {site!r}; built-in sites: {', '.join(SITES)}")
        splits = ("train", "test") if split == "all" else (split,)
        items = [(s, k, lab) for s in splits for k, lab in enumerate(site_labels(site, s))][:n]
        if not items:
            raise InputError(f"synthetic site {site} has no {split!r} cases")
        out = Path(out_dir)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*REQUIRED_COLUMNS, "split", "source"])
        for s, k, lab in items:
            c = generate_case(site, case_seed(s, k), label=lab)
            name = f"{site}-{s}-{k:04d}"
            write_nifti(out / "images" / f"{name}.nii.gz", c.volume, c.spacing)
            w.writerow([name, f"images/{name}.nii.gz", lab, *c.bbox, s, f"SYNTHETIC:{site}"])
        atomic_write_bytes(out / "labels.csv", buf.getvalue().encode())
        atomic_write_bytes(out / "SYNTHETIC.txt", (
            f"SYNTHETIC data: procedurally generated chest-CT-like volumes of medzoo site {site} ({SITES[site].description}).\n"
            "No patient data. Not for clinical use.\n").encode())
        return len(items)

    # -- training -----------------------------------------------------------------------------------------
    def step(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        logits = model(batch["image"])
        target = batch["target"].long()
        loss = classification_loss(logits, target, batch.get("weight"), kind=self.loss_kind)
        return StepOutput(loss=loss, logits=logits, target=target)

    def distill_loss(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return distill_kl(student_logits, teacher_logits)

    @torch.no_grad()
    def predict_proba(self, model: nn.Module, dataset: Dataset[Any], *, device: str | torch.device = "cpu",
                      batch_size: int = 64) -> tuple[Tensor, Tensor, list[str]]:
        """``(probs (N, K), targets (N,), ids)`` of ``model`` over ``dataset``, in dataset order."""
        model.eval().to(device)
        probs, targets, ids = [], [], []
        for b in DataLoader(dataset, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
            probs.append(torch.softmax(model(b["image"].to(device)).float(), 1).cpu())
            targets.append(b["target"].long())
            ids += list(b["id"])
        return torch.cat(probs), torch.cat(targets), ids

    def evaluate(self, model: nn.Module, dataset: Dataset[Any], *, device: str | torch.device = "cpu") -> EvalResult:
        """Macro AUROC (primary), balanced accuracy, accuracy, per-class AUROC/sensitivity/specificity;
        per case: ``correct``, ``p_true`` (probability of the true class), ``true_class``, ``pred_class``."""
        p, t, ids = self.predict_proba(model, dataset, device=device)
        metrics = classification_metrics(p, t, CLASSES)
        pred = p.argmax(1)
        per = {"correct": (pred == t).double().tolist(), "p_true": p.gather(1, t[:, None])[:, 0].double().tolist(),
               "true_class": t.double().tolist(), "pred_class": pred.double().tolist()}
        return EvalResult(metrics=metrics, per_sample=per, ids=tuple(ids))

    def confusion(self, model: nn.Module, dataset: Dataset[Any]) -> list[list[int]]:
        p, t, _ = self.predict_proba(model, dataset)
        return confusion_matrix(p, t, len(CLASSES))

    # -- replay -------------------------------------------------------------------------------------------
    def replay_pack(self, batch: Mapping[str, Any], size: int) -> Tensor:
        """Image channels + one constant plane per class (one-hot), resized to ``size``, in [0, 1]."""
        img = batch["image"].float()
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        onehot = F.one_hot(batch["target"].long(), len(CLASSES)).to(img)[:, :, None, None].expand(-1, -1, size, size)
        return torch.cat([img, onehot], 1).clamp(0, 1)

    def replay_unpack(self, x: Tensor) -> dict[str, Any]:
        c = self.spec.in_chans
        img = x[:, :c]
        if tuple(img.shape[-2:]) != self.spec.input_size:
            img = F.interpolate(img, size=self.spec.input_size, mode="bilinear", align_corners=False)
        target = x[:, c:].mean(dim=(2, 3)).argmax(1)
        return {"image": img.clamp(0, 1), "target": target, "id": [f"replay-{i}" for i in range(x.shape[0])]}

    # -- inference ----------------------------------------------------------------------------------------
    def wrap(self, model: nn.Module, meta: Mapping[str, Any] | None = None) -> MediastinumClassifier:
        return MediastinumClassifier(self, model, meta)

    def predict_files(self, model: Any, paths: Sequence[Path], out_dir: Path, **options: Any) -> list[Path]:
        """Classify the mass in each input (NIfTI file, DICOM file or series folder); write ``<name>.json``.

        Options: ``bbox`` (z0, y0, x0, z1, y1, x1) or ``mask`` (path to a mask volume), and ``spacing``
        (z, y, x mm; overrides the header). Returns the JSON paths.
        """
        from medzoo.io import atomic_write_json, output_stem

        unknown = sorted(k for k, v in options.items() if v is not None and k not in ("bbox", "mask", "spacing"))
        if unknown:
            raise InputError(f"options {unknown} do not apply to the mediastinum task (it takes bbox or mask, and spacing)")
        clf = model if isinstance(model, MediastinumClassifier) else self.wrap(model.net, model.meta)
        written = []
        for path in map(Path, paths):
            pred = clf.predict_path(path, bbox=options.get("bbox"), mask=options.get("mask"),
                                    spacing_mm=options.get("spacing"))
            name = output_stem(path)
            written.append(atomic_write_json(Path(out_dir) / f"{name}.json", {"input": str(path), **pred.to_json()}))
        return written

