"""``MidlineTask``: the Task protocol for brain-midline landmarks and midline shift on axial head CT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from medzoo.core import EvalResult, StepOutput, TaskSpec
from medzoo.errors import InputError
from medzoo.tasks.midline.geometry import LANDMARKS, shift_mm_torch
from medzoo.tasks.midline.loss import MidlineLoss, norm_to_mm, norm_to_px
from medzoo.tasks.midline.model import DEFAULT_ARCH, MidlineNet, dsnt, gaussian_heatmaps, spatial_softmax
from medzoo.tasks.midline.predict import MidlineModel, predict_files, predict_grid

CQ500_SITE = "cq500-warp"


class MidlineTask:
    """Brain midline landmarks (anterior falx, septum pellucidum, posterior falx) and midline shift in mm.

    Built-in sources: the SYNTHETIC sites ``synth-a`` .. ``synth-d`` (training) and ``synth-x`` (unseen
    acquisition settings, for testing), and ``cq500-warp`` (real-anatomy CQ500 template slices warped with a
    known shift; licence CC BY-NC-SA, so test split only). Any other source is a user folder
    (:mod:`medzoo.tasks.midline.dataset`).

    Example:
        >>> from medzoo import get_task
        >>> task = get_task("midline")
        >>> task.spec.classes
        ('falx_anterior', 'septum_pellucidum', 'falx_posterior')
    """
    predict_options: tuple[str, ...] = ("spacing", "slice_index", "window", "assume_hu")  # the input options predict_files uses

    spec = TaskSpec(name="midline", family="midline", target_kind="landmarks", num_outputs=3, in_chans=2,
                    input_size=(DEFAULT_ARCH["size"], DEFAULT_ARCH["size"]), primary_metric="mre_mm",
                    higher_is_better=False, classes=LANDMARKS, synthetic=True)

    # ---- model ---------------------------------------------------------------------------------------------
    def build_model(self, *, weights: str | Path | None = None, **arch: Any) -> nn.Module:
        if weights is not None:
            from medzoo.core import load_model
            from medzoo.weights import load_pretrained

            p = Path(weights)
            tm = load_model(p, expect_task=self.spec.name) if p.suffix == ".safetensors" or p.exists() else load_pretrained(self, str(weights))
            return tm.net
        return MidlineNet(**{**DEFAULT_ARCH, **arch})

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        return model.arch()  # type: ignore[no-any-return, operator]

    def wrap(self, model: nn.Module, meta: Mapping[str, Any] | None = None) -> MidlineModel:
        return MidlineModel(self, model, meta)

    # ---- data ----------------------------------------------------------------------------------------------
    def builtin_sites(self) -> tuple[str, ...]:
        from medzoo.tasks.midline.generator import SITES

        return (*SITES, CQ500_SITE)

    def build_dataset(self, source: str | Path, split: str, *, augment: bool = False) -> Dataset[Any]:
        from medzoo.tasks.midline.dataset import FolderDataset, SyntheticSiteDataset
        from medzoo.tasks.midline.generator import SITES

        size, gsp = DEFAULT_ARCH["size"], DEFAULT_ARCH["spacing_mm"]
        if str(source) in SITES:
            return SyntheticSiteDataset(str(source), split, augment=augment, size=size, grid_spacing=gsp)
        if str(source) == CQ500_SITE:
            if split == "train" or augment:
                raise InputError("cq500-warp is built from the CQ500 template (CC BY-NC-SA 4.0): evaluation only, "
                                 "use split 'test'; it must not train weights")
            from medzoo.tasks.midline.cq500 import CQ500WarpDataset

            return CQ500WarpDataset(size=size, grid_spacing=gsp)
        return FolderDataset(source, split, augment=augment, size=size, grid_spacing=gsp)

    def write_site(self, site: str, split: str, out_dir: str | Path, n: int | None = None) -> int:
        """Write a built-in SYNTHETIC site as a user folder (``images/*.nii.gz`` + ``landmarks.csv``); returns the count.

        Example:
            >>> get_task("midline").write_site("synth-a", "train", "/tmp/site_a", n=4)   # doctest: +SKIP
            4
        """
        from medzoo.tasks.midline.sitewriter import write_site

        return write_site(site, split, Path(out_dir), n=n)

    # ---- training ------------------------------------------------------------------------------------------
    def step(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        logits = model(batch["image"])
        size = logits.shape[-1]
        loss = MidlineLoss(size, float(getattr(model, "spacing_mm", DEFAULT_ARCH["spacing_mm"])) * getattr(model, "size", size) / size)
        return StepOutput(loss=loss(logits, batch["target"]), logits=logits, target=batch["target"])

    def distill_loss(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """KL(teacher || student) of the spatial distributions plus the squared distance of their decoded points
        (in grid pixels); zero when the two networks agree."""
        ps, pt = spatial_softmax(student_logits), spatial_softmax(teacher_logits)
        kl = (pt * (torch.log(pt + 1e-10) - torch.log(ps + 1e-10))).sum(dim=(-2, -1)).mean()
        d = ((dsnt(ps) - dsnt(pt)) * (student_logits.shape[-1] / 2)).pow(2).sum(-1).mean()
        return kl + 0.1 * d

    def replay_pack(self, batch: Mapping[str, Any], size: int) -> Tensor:
        img = F.interpolate(batch["image"].float(), size=(size, size), mode="bilinear", align_corners=False)
        h = gaussian_heatmaps(batch["target"].float().to(img.device), size, sigma_px=max(1.0, 2.0 * size / self.spec.input_size[0]))
        h = h / h.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        return torch.cat([img.clamp(0, 1), h], dim=1)

    def replay_unpack(self, x: Tensor) -> dict[str, Any]:
        c = self.spec.in_chans
        s = self.spec.input_size
        img = F.interpolate(x[:, :c].float(), size=s, mode="bilinear", align_corners=False).clamp(0, 1)
        h = x[:, c:].float().clamp_min(0)
        h = torch.where(h >= 0.5 * h.amax(dim=(-2, -1), keepdim=True), h, torch.zeros_like(h))
        h = h / h.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        target = dsnt(h)
        sp = torch.full((2,), DEFAULT_ARCH["spacing_mm"], device=x.device)
        shift = shift_mm_torch(norm_to_px(target, s[0]), sp)
        return {"image": img, "target": target, "shift_mm": shift, "id": [f"replay/{i}" for i in range(x.shape[0])]}

    # ---- evaluation / prediction ---------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, dataset: Dataset[Any], *, device: str | torch.device = "cpu",
                 tta: bool = True, batch_size: int = 16) -> EvalResult:
        """MRE, SDR@2/4 mm, shift error, shift >= 5 mm detection; per-sample MRE, shift error and shifts.

        Points are decoded on the network grid, whose mm scale equals the input's, so errors are in true mm.
        """
        from medzoo.tasks.midline.metric import midline_metrics

        model = model.to(device).eval()
        size = int(getattr(model, "size", self.spec.input_size[0]))
        gsp = float(getattr(model, "spacing_mm", DEFAULT_ARCH["spacing_mm"]))
        preds, trues, ids = [], [], []
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
        for batch in loader:
            if batch["image"].shape[-1] != size:
                raise InputError(f"dataset grid {batch['image'].shape[-1]} px does not match the model's {size} px")
            preds.append(predict_grid(model, batch["image"].to(device), tta=tta).double().cpu())
            trues.append(batch["target"].double())
            ids += list(batch["id"])
        pn, tn = torch.cat(preds), torch.cat(trues)
        sp = torch.tensor([gsp, gsp], dtype=torch.float64)
        ps, ts = shift_mm_torch(norm_to_px(pn, size), sp), shift_mm_torch(norm_to_px(tn, size), sp)
        pmm, tmm = norm_to_mm(pn, size, gsp), norm_to_mm(tn, size, gsp)
        metrics = midline_metrics(pmm, tmm, ps, ts)
        metrics["n"] = float(len(ids))
        radial = torch.linalg.norm(pmm - tmm, dim=-1)
        per = {"mre_mm": radial.mean(1).tolist(), "shift_abs_error_mm": (ps - ts).abs().tolist(),
               "pred_shift_mm": ps.tolist(), "true_shift_mm": ts.tolist()}
        for k, name in enumerate(LANDMARKS):
            per[f"error_{name}_mm"] = radial[:, k].tolist()
        return EvalResult(metrics=metrics, per_sample=per, ids=tuple(ids))

    def predict_files(self, model: Any, paths: Sequence[Path], out_dir: Path, **options: Any) -> list[Path]:
        """Write ``<stem>.midline.json`` (landmarks, shift) and ``<stem>.midline.png`` (overlay) per input.

        Options: ``spacing`` (mm, overrides headers; required for .npy), ``slice_index`` (volumes),
        ``assume_hu``, ``window``.
        """
        if not isinstance(model, MidlineModel):
            model = self.wrap(model.net if hasattr(model, "net") else model, getattr(model, "meta", {}))
        return predict_files(model, paths, Path(out_dir), **options)
