"""The fundus networks (a CPU-friendly smp U-Net on a timm MobileNetV3 encoder) and :class:`FundusModel`,
the trained network bound to its task with ``predict`` / ``predict_proba`` / ``vcdr``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
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


#: smallest side (px) either network accepts.
MIN_SIDE = 32
#: smallest longer side (px) of a disc photograph. The disc network sees the image with its longer side at
#: DISC_SIDE (384 px), so smaller images are enlarged; below 64 px the disc is only a few pixels across (a floor
#: chosen by judgement, not by a benchmark).
DISC_MIN_LONG_SIDE = 64


def check_rgb(rgb: Any, path: str | Path | None = None, *, kind: str = "vessels") -> np.ndarray:
    """Validate a photograph for the ``kind`` (``"vessels"`` or ``"disc"``) network: ``H x W x 3`` uint8, at
    least :data:`MIN_SIDE` px a side, and for the disc network a longer side of at least :data:`DISC_MIN_LONG_SIDE`.

    Args:
        rgb: the image array (as :func:`medzoo.io.read_rgb` gives).
        path: the file it came from, named in the error (callers that read files should pass it).
        kind: which network the image is for.

    Returns:
        the image as a C-contiguous array.

    Raises:
        InputError: anything else (grayscale, RGBA, 16-bit, float, too small), naming ``path`` when given.
    """
    if kind not in ("vessels", "disc"):
        raise ValueError(f"kind must be 'vessels' or 'disc', got {kind!r}")
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        raise InputError(f"expected an H x W x 3 uint8 RGB array, got dtype {a.dtype}", path)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"expected an H x W x 3 uint8 RGB array, got shape {a.shape}", path)
    if min(a.shape[:2]) < MIN_SIDE:
        raise InputError(f"image is too small ({a.shape[1]}x{a.shape[0]}); at least {MIN_SIDE} px a side is needed",
                         path)
    if kind == "disc" and max(a.shape[:2]) < DISC_MIN_LONG_SIDE:
        raise InputError(f"image is too small ({a.shape[1]}x{a.shape[0]}) for the optic disc model: its longer side "
                         f"must be at least {DISC_MIN_LONG_SIDE} px (the model expects a disc-centred photograph, "
                         "seen at 384 px)", path)
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

    def check_input(self, rgb: Any, path: str | Path | None = None) -> np.ndarray:
        """:func:`check_rgb` for this model's network: the image, or :class:`InputError` naming ``path``."""
        return check_rgb(rgb, path, kind=self.kind)

    @torch.inference_mode()
    def predict_proba(self, rgb: np.ndarray, *, path: str | Path | None = None) -> np.ndarray:
        """Per-pixel probabilities.

        Args:
            rgb: ``H x W x 3`` uint8 RGB (disc model: longer side at least 64 px).
            path: the file ``rgb`` came from, only to name it in errors.

        Returns:
            vessels: ``H x W`` float32 in [0, 1] (0 outside the derived field of view);
            disc: ``H x W x 2`` float32 (channel 0 optic disc incl. cup, 1 cup).
        """
        from medzoo.tasks.fundus.predict import disc_proba, vessel_proba

        rgb = self.check_input(rgb, path)
        return vessel_proba(self.net, rgb) if self.kind == "vessels" else disc_proba(self.net, rgb)

    def predict(self, rgb: np.ndarray, *, threshold: float | None = None, path: str | Path | None = None) -> np.ndarray:
        """Segment one photograph.

        Args:
            rgb: ``H x W x 3`` uint8 RGB (disc model: a disc-centred photograph, longer side at least 64 px).
            threshold: probability threshold (default: the model card's, else 0.5).
            path: the file ``rgb`` came from, only to name it in errors.

        Returns:
            ``H x W`` uint8: vessels 1 = vessel; disc 0 background, 1 optic disc outside the cup, 2 cup.
        """
        from medzoo.tasks.fundus.predict import disc_labels

        t = self.threshold if threshold is None else threshold
        p = self.predict_proba(rgb, path=path)
        if self.kind == "vessels":
            return (p >= t).astype(np.uint8)
        return disc_labels(p, t, shape=self.disc_shape)

    def vcdr(self, rgb_or_labels: np.ndarray) -> float:
        """Vertical cup-to-disc ratio of a photograph (or of a label map from :meth:`predict`); NaN without a disc.

        Only for the optic disc/cup model (``pretrained("disc")``), which expects a disc-centred photograph (like
        Drishti-GS1, ~30 deg, the disc near the centre); on a macula-centred or wide-field photograph it may
        report a wrong disc or none. That is not detected: check the overlay.

        Raises:
            InputError: called on the vessel model, or a photograph that :meth:`predict` refuses.
        """
        from medzoo.tasks.fundus.metric import vcdr

        if self.kind != "disc":
            raise InputError(f"vcdr() needs the optic disc/cup model (fundus.pretrained('disc')); this is the "
                             f"{self.task.spec.name} model, whose labels have no disc or cup")
        a = np.asarray(rgb_or_labels)
        labels = a if a.ndim == 2 else self.predict(a)
        return vcdr(labels)
