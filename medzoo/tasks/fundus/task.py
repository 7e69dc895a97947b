"""The two fundus tasks, implementing :class:`medzoo.core.Task`: retinal vessels and optic disc/cup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from medzoo.core import EvalResult, StepOutput, TaskSpec, load_state_dict_strict, read_model_file
from medzoo.tasks.fundus import metric as M
from medzoo.tasks.fundus.dataset import DiscImages, VesselImages, VesselPatches, disc_network_size
from medzoo.tasks.fundus.loss import dice_bce_loss, sigmoid_distill_loss, teacher_agrees
from medzoo.tasks.fundus.transforms import AUGMENT_LEVELS
from medzoo.tasks.fundus.model import DEFAULT_DECODER, DEFAULT_ENCODER, FundusModel, build_unet
from medzoo.tasks.fundus.sources import DISC_SITES, VESSEL_SITES, resolve


class _FundusTask:
    predict_options: tuple[str, ...] = ("threshold",)  # the input options predict_files uses (the CLI refuses others)
    augment_levels: tuple[str, ...] = AUGMENT_LEVELS  # what build_dataset(augment=...) takes besides True/False
    spec: TaskSpec
    kind: str
    sites: tuple[str, ...]

    def build_model(self, *, weights: str | Path | None = None, **arch: Any) -> nn.Module:
        """A fresh U-Net (random init) or one loaded from shipped weights (``"fundus-vessels"`` ...) or a file.

        Args:
            weights: shipped weights name or a ``.safetensors`` medzoo model file.
            **arch: ``encoder``, ``decoder_channels``, ``norm_eval`` (see :func:`~medzoo.tasks.fundus.model.build_unet`).
        """
        if weights is not None:
            if Path(weights).suffix == ".safetensors" or Path(weights).exists():
                name, arch_f, _, state = read_model_file(weights)
                if name != self.spec.name:
                    from medzoo.errors import WeightsError

                    raise WeightsError(f"{weights}: this model is for task {name!r}, not {self.spec.name!r}")
                net = self.build_model(**arch_f)
                load_state_dict_strict(net, state, source=str(weights))
                return net
            from medzoo.weights import load_pretrained

            return load_pretrained(self, str(weights)).net  # type: ignore[arg-type]
        arch.setdefault("encoder", DEFAULT_ENCODER)
        arch.setdefault("decoder_channels", DEFAULT_DECODER)
        arch.pop("in_chans", None)
        arch.pop("classes", None)
        return build_unet(in_chans=self.spec.in_chans, classes=self.spec.num_outputs, **arch)

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        arch = dict(getattr(model, "medzoo_arch", {}))
        if not arch:
            raise ValueError("this network was not built by the fundus task's build_model")
        out = {"encoder": arch["encoder"], "decoder_channels": list(arch["decoder_channels"])}
        from medzoo.norm import norm_eval_of

        if norm_eval_of(model) != "running":  # only when set: files written without it keep their architecture
            out["norm_eval"] = norm_eval_of(model)
        return out

    def builtin_sites(self) -> tuple[str, ...]:
        return self.sites

    def step(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        logits = model(batch["image"])
        target = batch["target"].float()
        return StepOutput(loss=dice_bce_loss(logits, target), logits=logits, target=target)

    def distill_loss(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """Per-pixel sigmoid distillation (temperature 2), see :func:`~medzoo.tasks.fundus.loss.sigmoid_distill_loss`."""
        return sigmoid_distill_loss(student_logits, teacher_logits)

    def distill_loss_where_teacher_agrees(self, student_logits: Tensor, teacher_logits: Tensor, target: Tensor) -> Tensor:
        """:meth:`distill_loss` on the pixels (and channels) where the teacher's mask (p >= 0.5) equals the label;
        where the label contradicts the teacher, only the task loss teaches (LwF ``distill_where="teacher_agrees"``)."""
        return sigmoid_distill_loss(student_logits, teacher_logits, weight=teacher_agrees(teacher_logits, target))

    def perturb_batch(self, batch: Mapping[str, Any], *, seed: int) -> dict[str, Any]:
        """A copy of a training batch passed again through the strong training augmentation
        (:func:`~medzoo.tasks.fundus.transforms.train_augment` ``(kind, "strong")``, image and masks together), for
        LwF's ``distill_inputs="perturbed"``: the same patches as another camera might show them."""
        from medzoo.tasks.fundus.transforms import train_augment

        if getattr(self, "_perturb", None) is None:
            self._perturb = train_augment(self.kind, "strong")
        pipe = self._perturb
        pipe.set_random_seed(seed)  # type: ignore[attr-defined]
        img = batch["image"].detach().float().cpu().permute(0, 2, 3, 1).numpy()
        keys = [k for k in ("target", "fov") if torch.is_tensor(batch.get(k))]
        chans = [batch[k].shape[1] for k in keys]
        # one mask of all the target and FOV channels, so that they move with the image together
        mask = torch.cat([batch[k].detach().float().cpu() for k in keys], 1).permute(0, 2, 3, 1).numpy() if keys else None
        outs = [pipe(image=img[i], **({"mask": mask[i]} if mask is not None else {})) for i in range(len(img))]  # type: ignore[operator]
        view = dict(batch)
        dev = batch["image"].device
        view["image"] = torch.from_numpy(np.stack([np.clip(r["image"], 0, 1) for r in outs])).permute(0, 3, 1, 2) \
            .to(dev, batch["image"].dtype)
        if mask is not None:
            moved = torch.from_numpy(np.stack([np.asarray(r["mask"]).reshape(r["image"].shape[:2] + (-1,))
                                               for r in outs])).permute(0, 3, 1, 2)
            for k, part in zip(keys, torch.split(moved, chans, dim=1)):
                view[k] = part.to(dev, batch[k].dtype)
        return view

    def replay_pack(self, batch: Mapping[str, Any], size: int) -> Tensor:
        img = F.interpolate(batch["image"].float(), size=(size, size), mode="bilinear", align_corners=False)
        tgt = F.interpolate(batch["target"].float(), size=(size, size), mode="nearest")
        return torch.cat([img.clamp(0, 1), tgt], dim=1)

    def replay_unpack(self, x: Tensor) -> dict[str, Any]:
        c = self.spec.in_chans
        img, tgt = x[:, :c].clamp(0, 1), (x[:, c:] >= 0.5).float()
        return {"image": img, "target": tgt, "fov": torch.ones_like(tgt[:, :1]), "id": [f"replay{i}" for i in range(len(x))]}

    def wrap(self, model: nn.Module, meta: Mapping[str, Any] | None = None) -> FundusModel:
        return FundusModel(self, model, meta)  # type: ignore[arg-type]

    def predict_files(self, model: Any, paths: Sequence[Path], out_dir: Path, **options: Any) -> list[Path]:
        from medzoo.tasks.fundus.predict import predict_files

        return predict_files(model, paths, out_dir, **options)


class VesselTask(_FundusTask):
    """Retinal vessel segmentation of colour fundus photographs (one sigmoid channel).

    Built-in sites: ``drive``, ``stare``, ``hrf`` (real data under :func:`medzoo.io.data_root`). Primary metric:
    ``dice`` inside the FOV, per image then averaged.

    Example:
        >>> from medzoo.tasks import fundus
        >>> task = fundus.VesselTask(); task.builtin_sites()
        ('drive', 'stare', 'hrf')
    """

    kind = "vessels"
    sites = VESSEL_SITES
    spec = TaskSpec(name="fundus-vessels", family="fundus", target_kind="mask", num_outputs=1, in_chans=1,
                    input_size=(256, 256), primary_metric="dice", classes=("vessel",))

    def build_dataset(self, source: str | Path, split: str, *, augment: bool | str = False,
                      patches_per_image: int = 8) -> Dataset[Any]:
        """Training split (``train``, or ``fit``: the training images less the ``val`` ones): random 256 px patches
        (FOV-centred, ``patches_per_image`` per image and epoch); ``test``/``val``/``all``: whole images with their FOV.

        Raises:
            InputError: see :func:`~medzoo.tasks.fundus.sources.folder_records`, or a bad file.
        """
        _, recs = resolve(source, split, kind="vessels")
        if split in ("train", "fit"):
            return VesselPatches(recs, patches_per_image=patches_per_image, augment=augment)
        return VesselImages(recs)

    def evaluate(self, model: nn.Module, dataset: Dataset[Any], *, device: str | torch.device = "cpu",
                 threshold: float = 0.5) -> EvalResult:
        """Per-image metrics inside the FOV (Dice, sensitivity, specificity, accuracy, AUC), then their mean."""
        model = model.to(device).eval()
        meter = M.VesselMetrics(threshold=threshold)
        ids = []
        with torch.inference_mode():
            for i in range(len(dataset)):  # type: ignore[arg-type]
                s = dataset[i]
                h, w = s["target"].shape[-2:]
                p = torch.sigmoid(model(s["image"][None].to(device)))[0, 0, :h, :w].cpu()
                meter.update(p, s["target"][0], s["fov"][0])
                ids.append(str(s["id"]))
        return EvalResult(metrics=meter.compute(), per_sample=meter.per_image(), ids=tuple(ids))


class DiscCupTask(_FundusTask):
    """Optic disc and cup segmentation (two sigmoid channels: disc incl. cup, cup) and vertical CDR.

    Built-in site: ``drishti`` (Drishti-GS1). Primary metric: ``dice_mean`` = (Dice disc + Dice cup) / 2.

    Example:
        >>> from medzoo.tasks import fundus
        >>> fundus.DiscCupTask().spec.primary_metric
        'dice_mean'
    """

    kind = "disc"
    sites = DISC_SITES
    spec = TaskSpec(name="fundus-disc", family="fundus", target_kind="mask", num_outputs=2, in_chans=3,
                    input_size=(352, 384), primary_metric="dice_mean", classes=("disc", "cup"))

    def build_dataset(self, source: str | Path, split: str, *, augment: bool | str = False) -> Dataset[Any]:
        """Training split (``train``/``fit``): resized 352x384 crops; ``test``/``val``/``all``: whole resized images,
        targets at stored size."""
        _, recs = resolve(source, split, kind="disc")
        return DiscImages(recs, crop=split in ("train", "fit"), augment=augment)

    def evaluate(self, model: nn.Module, dataset: Dataset[Any], *, device: str | torch.device = "cpu",
                 threshold: float = 0.5, shape: str | None = None) -> EvalResult:
        """Per-image Dice disc, Dice cup, their mean, vCDR absolute error (vs the majority masks), and, when the
        dataset has them, ``vcdr_abs_err_experts`` (vs the mean of the experts' CDR values).

        ``shape``: outline post-processing of :func:`~medzoo.tasks.fundus.predict.disc_labels` (default
        :data:`~medzoo.tasks.fundus.predict.DEFAULT_DISC_SHAPE`)."""
        from medzoo.tasks.fundus import transforms as T
        from medzoo.tasks.fundus.predict import DEFAULT_DISC_SHAPE, disc_labels

        shape = shape or DEFAULT_DISC_SHAPE
        model = model.to(device).eval()
        meter = M.DiscCupMetrics()
        experts: list[float] = []
        ids = []
        with torch.inference_mode():
            for i in range(len(dataset)):  # type: ignore[arg-type]
                s = dataset[i]
                h, w = s["target"].shape[-2:]
                nh, nw = disc_network_size(h, w) if not isinstance(dataset, DiscImages) or not dataset.crop else (h, w)
                p = torch.sigmoid(model(s["image"][None].to(device)))[0, :, :nh, :nw].permute(1, 2, 0).cpu().numpy()
                pred = disc_labels(T.resize(p, (h, w)), threshold, shape=shape)
                true = M.target_labels(s["target"].numpy())
                meter.update(pred, true)
                experts.append(abs(M.vcdr(pred) - float(s.get("cdr_experts", float("nan")))))
                ids.append(str(s["id"]))
        per = meter.per_image()
        if np.isfinite(experts).any():
            per["vcdr_abs_err_experts"] = experts
        return EvalResult(metrics=M.mean_metrics(per), per_sample=per, ids=tuple(ids))
