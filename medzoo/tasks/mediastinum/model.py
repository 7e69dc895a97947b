"""The network: a small timm backbone (``pretrained=False``) on the 2.5D crop, with its preprocessing attached."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from medzoo.tasks.mediastinum.generator import CLASSES
from medzoo.tasks.mediastinum.preprocess import Preprocess

DEFAULT_BACKBONE = "mobilenetv3_small_100"


class MediastinumNet(nn.Module):
    """A timm classifier whose input channels follow ``preprocess``; ``forward`` returns logits ``(B, K)``.

    Args:
        backbone: a timm model name (created with ``pretrained=False``: nothing is downloaded).
        preprocess: how volumes become inputs; saved with the weights so ``predict`` matches training.
        num_classes: number of mass classes.
        drop_rate: dropout before the classifier.

    Shape:
        input ``(B, preprocess.channels, preprocess.size, preprocess.size)`` in [0, 1] -> ``(B, num_classes)``.
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, preprocess: Preprocess | None = None,
                 num_classes: int = len(CLASSES), drop_rate: float = 0.2) -> None:
        import timm

        super().__init__()
        self.preprocess = preprocess or Preprocess()
        self.backbone_name, self.num_classes, self.drop_rate = backbone, num_classes, drop_rate
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=num_classes,
                                          in_chans=self.preprocess.channels, drop_rate=drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x * 2.0 - 1.0)  # type: ignore[no-any-return]

    def architecture(self) -> dict[str, Any]:
        return {"backbone": self.backbone_name, "num_classes": self.num_classes, "drop_rate": self.drop_rate,
                "preprocess": asdict(self.preprocess)}


def build_net(backbone: str = DEFAULT_BACKBONE, preprocess: Preprocess | dict[str, Any] | None = None,
              num_classes: int = len(CLASSES), drop_rate: float = 0.2) -> MediastinumNet:
    """A fresh :class:`MediastinumNet` (random init).

    Example:
        >>> net = build_net()
        >>> net(torch.zeros(1, net.preprocess.channels, 64, 64)).shape
        torch.Size([1, 5])
    """
    if isinstance(preprocess, dict):
        preprocess = Preprocess(**preprocess)
    return MediastinumNet(backbone, preprocess, num_classes, drop_rate)
