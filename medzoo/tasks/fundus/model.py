"""The fundus networks (a CPU-friendly smp U-Net on a timm MobileNetV3 encoder) and :class:`FundusModel`,
the trained network bound to its task with ``predict`` / ``predict_proba`` / ``vcdr``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from medzoo.core import TaskModel
from medzoo.errors import InputError

if TYPE_CHECKING:
    from medzoo.core import Task

DEFAULT_ENCODER = "tu-mobilenetv3_large_100"
DEFAULT_DECODER = (64, 48, 32, 24, 16)


def build_unet(*, in_chans: int, classes: int, encoder: str = DEFAULT_ENCODER,
               decoder_channels: tuple[int, ...] | list[int] = DEFAULT_DECODER, norm_eval: str = "running") -> nn.Module:
    """A U-Net (segmentation_models_pytorch) with a timm encoder, random init (nothing is downloaded).

    Args:
        in_chans: input channels (1 for vessels, 3 for disc/cup).
        classes: output channels (sigmoid logits).
        encoder: smp encoder name; ``"tu-<timm name>"`` uses a timm backbone.
        decoder_channels: decoder widths, deepest first (five of them).
        norm_eval: ``"running"`` (BatchNorm's running statistics at inference) or ``"image"`` (each image's own
            statistics; :mod:`medzoo.norm`).

    Returns:
        the network; its builder arguments are kept in ``net.medzoo_arch``.

    Example:
        >>> import torch
        >>> net = build_unet(in_chans=1, classes=1, encoder="tu-mobilenetv3_small_050", decoder_channels=(16, 16, 8, 8, 8))
        >>> net(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """
    import segmentation_models_pytorch as smp

    net = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_chans, classes=classes,
                   decoder_channels=tuple(decoder_channels))
    net.medzoo_arch = {"encoder": encoder, "decoder_channels": list(decoder_channels),  # type: ignore[assignment]
                       "in_chans": in_chans, "classes": classes}
    if norm_eval != "running":
        from medzoo.norm import set_norm_eval

        set_norm_eval(net, norm_eval)
        net.medzoo_arch["norm_eval"] = norm_eval  # type: ignore[index]
    return net


def check_rgb(rgb: Any) -> np.ndarray:
    """Validate an in-memory photograph: ``H x W x 3`` uint8, at least 32 px a side.

    Raises:
        InputError: anything else (grayscale, RGBA, 16-bit, float, too small).
    """
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        raise InputError(f"expected an H x W x 3 uint8 RGB array, got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"expected an H x W x 3 uint8 RGB array, got shape {a.shape}")
    if min(a.shape[:2]) < 32:
        raise InputError(f"image is too small ({a.shape[1]}x{a.shape[0]}); at least 32 px a side is needed")
    return np.ascontiguousarray(a)


class FundusModel(TaskModel):
    """A trained fundus network with pre/post-processing: what :func:`~medzoo.tasks.fundus.pretrained` returns.

    Inputs are ``H x W x 3`` uint8 RGB arrays (as :func:`medzoo.io.read_rgb` gives); outputs have the input's size.

    Example:
        >>> from medzoo.tasks import fundus                           # doctest: +SKIP
        >>> v = fundus.pretrained("vessels"); v.predict(rgb).shape     # doctest: +SKIP
        (584, 565)
    """

    def __init__(self, task: Task, net: nn.Module, meta: Mapping[str, Any] | None = None) -> None:
        super().__init__(task, net, meta)

    @property
    def kind(self) -> str:
        return "vessels" if self.task.spec.name == "fundus-vessels" else "disc"

    @property
    def threshold(self) -> float:
        return float(self.meta.get("extra", {}).get("threshold", 0.5)) if isinstance(self.meta.get("extra"), dict) else 0.5

    @property
    def disc_shape(self) -> str:
        """Disc/cup outline post-processing: the model card's ``extra.disc_shape``, else the task default."""
        from medzoo.tasks.fundus.predict import DEFAULT_DISC_SHAPE

        extra = self.meta.get("extra")
        return str(extra.get("disc_shape", DEFAULT_DISC_SHAPE)) if isinstance(extra, dict) else DEFAULT_DISC_SHAPE

    @torch.inference_mode()
    def predict_proba(self, rgb: np.ndarray) -> np.ndarray:
        """Per-pixel probabilities.

        Args:
            rgb: ``H x W x 3`` uint8 RGB.

        Returns:
            vessels: ``H x W`` float32 in [0, 1] (0 outside the derived field of view);
            disc: ``H x W x 2`` float32 (channel 0 optic disc incl. cup, 1 cup).
        """
        from medzoo.tasks.fundus.predict import disc_proba, vessel_proba

        rgb = check_rgb(rgb)
        return vessel_proba(self.net, rgb) if self.kind == "vessels" else disc_proba(self.net, rgb)

    def predict(self, rgb: np.ndarray, *, threshold: float | None = None) -> np.ndarray:
        """Segment one photograph.

        Args:
            rgb: ``H x W x 3`` uint8 RGB.
            threshold: probability threshold (default: the model card's, else 0.5).

        Returns:
            ``H x W`` uint8: vessels 1 = vessel; disc 0 background, 1 optic disc outside the cup, 2 cup.
        """
        from medzoo.tasks.fundus.predict import disc_labels

        t = self.threshold if threshold is None else threshold
        p = self.predict_proba(rgb)
        if self.kind == "vessels":
            return (p >= t).astype(np.uint8)
        return disc_labels(p, t, shape=self.disc_shape)

    def vcdr(self, rgb_or_labels: np.ndarray) -> float:
        """Vertical cup-to-disc ratio of a photograph (or of a label map from :meth:`predict`); NaN without a disc."""
        from medzoo.tasks.fundus.metric import vcdr

        a = np.asarray(rgb_or_labels)
        labels = a if a.ndim == 2 else self.predict(a)
        return vcdr(labels)
