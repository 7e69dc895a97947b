"""Heatmap-regression network with differentiable sub-pixel decoding (DSNT / soft-argmax).

An smp U-Net (random init, ``encoder_weights=None``) outputs one logit map per landmark at the input grid's
resolution; a spatial softmax turns each map into a probability distribution whose mean is the landmark
(Nibali et al., "Numerical Coordinate Regression with Convolutional Neural Networks", 2018). Coordinates are
normalised to [-1, 1] (pixel centres at ``(2i + 1) / size - 1``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

DEFAULT_ARCH: dict[str, Any] = {
    "encoder": "tu-mobilenetv3_small_100",
    "decoder_channels": [64, 32, 24, 16, 16],
    "in_chans": 2,
    "num_landmarks": 3,
    "size": 128,
    "spacing_mm": 1.6,
}


class MidlineNet(nn.Module):
    """U-Net producing ``num_landmarks`` heatmap logits at the input resolution.

    Args:
        encoder: smp encoder name (``tu-*`` for timm encoders); always randomly initialised.
        decoder_channels: U-Net decoder widths (5 stages).
        in_chans: input channels (HU windows).
        num_landmarks: output maps.
        size: side of the square grid the network is trained on (pixels).
        spacing_mm: pixel size of that grid; ``predict`` resamples every input to it.

    Shape:
        input ``(B, in_chans, size, size)`` -> logits ``(B, num_landmarks, size, size)``.

    Example:
        >>> net = MidlineNet(size=64)
        >>> net(torch.zeros(1, 2, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(self, encoder: str = DEFAULT_ARCH["encoder"], decoder_channels: list[int] | tuple[int, ...] = (64, 32, 24, 16, 16),
                 in_chans: int = 2, num_landmarks: int = 3, size: int = 128, spacing_mm: float = 1.6) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.encoder_name = encoder
        self.decoder_channels = [int(c) for c in decoder_channels]
        self.in_chans, self.num_landmarks = int(in_chans), int(num_landmarks)
        self.size, self.spacing_mm = int(size), float(spacing_mm)
        self.unet = smp.Unet(encoder, encoder_weights=None, in_channels=in_chans, classes=num_landmarks,
                             decoder_channels=tuple(self.decoder_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.unet(x)  # type: ignore[no-any-return]

    def arch(self) -> dict[str, Any]:
        return {"encoder": self.encoder_name, "decoder_channels": self.decoder_channels, "in_chans": self.in_chans,
                "num_landmarks": self.num_landmarks, "size": self.size, "spacing_mm": self.spacing_mm}


def spatial_softmax(logits: Tensor) -> Tensor:
    """Per-map softmax over all pixels. Shape: ``(B, K, H, W)`` -> same, each map summing to 1."""
    b, k, h, w = logits.shape
    return torch.softmax(logits.float().reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)


def dsnt(prob: Tensor) -> Tensor:
    """Expected (x, y) of each probability map in normalised coordinates. Shape: ``(B, K, H, W)`` -> ``(B, K, 2)``."""
    _, _, h, w = prob.shape
    xs = (2 * torch.arange(w, device=prob.device, dtype=prob.dtype) + 1) / w - 1
    ys = (2 * torch.arange(h, device=prob.device, dtype=prob.dtype) + 1) / h - 1
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)


def decode(logits: Tensor) -> Tensor:
    """Logits -> normalised (x, y) landmarks, ``(B, K, 2)``."""
    return dsnt(spatial_softmax(logits))


def gaussian_heatmaps(points_n: Tensor, size: int, sigma_px: float = 1.5) -> Tensor:
    """Normalised Gaussian maps (each sums to 1) centred on ``(B, K, 2)`` normalised points -> ``(B, K, size, size)``."""
    grid = (2 * torch.arange(size, device=points_n.device, dtype=torch.float32) + 1) / size - 1
    s = 2 * sigma_px / size
    gx = torch.exp(-0.5 * ((grid[None, None, :] - points_n[..., 0:1].float()) / s) ** 2)
    gy = torch.exp(-0.5 * ((grid[None, None, :] - points_n[..., 1:2].float()) / s) ** 2)
    g = gy[..., :, None] * gx[..., None, :]
    return g / g.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
