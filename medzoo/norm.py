"""Where a network's BatchNorm layers take their statistics from at inference: ``norm_eval``.

* ``"running"`` (PyTorch's default): the running mean and variance accumulated during training.
* ``"image"``: each image's own per-channel mean and variance, in every BatchNorm layer, at inference; training
  is unchanged (batch statistics, running statistics still accumulated). This is prediction-time batch
  normalisation with a batch of one (Nado et al. 2020, arXiv:2006.10963; Schneider et al., NeurIPS 2020): a
  prediction depends on that image only, never on the other images in a batch nor on statistics that the last
  site of a relay or the last batches of training happened to leave in the buffers. Useful where test images
  come from cameras or sites whose intensity statistics differ from the training mix, and the measured reason
  the relay benchmark offers it (docs/relay.md); it can cost accuracy on data like the training data (the shipped
  fundus-vessels weights score lower with it; :func:`set_norm_eval` is opt-in).

The mode is part of a network's architecture (``medzoo_arch["norm_eval"]`` for the fundus networks), so a model
file or a relay baton rebuilds it as trained. The state dict is the same in both modes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from medzoo.errors import InputError

NormEval = Literal["running", "image"]
NORM_EVAL_MODES: tuple[str, ...] = ("running", "image")

_CLASSES: dict[type, type] = {}


class _ImageStatsMixin:
    """In eval mode, normalise each sample with its own statistics (the BatchNorm's forward with no buffers,
    one sample at a time); in training mode, the layer's own forward."""

    medzoo_norm_eval = "image"

    def forward(self, x: torch.Tensor) -> Any:
        if self.training:  # type: ignore[attr-defined]
            return super().forward(x)  # type: ignore[misc]
        fwd = super().forward  # type: ignore[misc]
        rm, rv = self.running_mean, self.running_var  # type: ignore[attr-defined, has-type]
        self.running_mean = self.running_var = None  # eval with no buffers: batch statistics, nothing updated
        try:
            return torch.cat([fwd(x[i:i + 1]) for i in range(x.shape[0])])
        finally:
            self.running_mean, self.running_var = rm, rv


def _image_class(cls: type) -> type:
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"ImageStats{cls.__name__}", (_ImageStatsMixin, cls), {"__module__": __name__})
    return _CLASSES[cls]


def set_norm_eval(net: nn.Module, mode: str) -> int:
    """Set where every BatchNorm layer of ``net`` takes its inference statistics from (in place).

    Args:
        net: any network; its BatchNorm layers (torch's and subclasses such as timm's ``BatchNormAct2d``) change
            class, nothing else does (parameters, buffers and state-dict keys stay).
        mode: ``"running"`` or ``"image"`` (see the module docstring).

    Returns:
        the number of BatchNorm layers.

    Raises:
        InputError: an unknown mode.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
        >>> set_norm_eval(net, "image")
        1
        >>> a, b = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
        >>> torch.allclose(net(torch.cat([a, b]))[:1], net(a), atol=1e-6)  # one image's output ignores the others
        True
    """
    if mode not in NORM_EVAL_MODES:
        raise InputError(f"norm_eval must be one of {NORM_EVAL_MODES}, got {mode!r}")
    n = 0
    for m in net.modules():
        if not isinstance(m, _BatchNorm):
            continue
        n += 1
        base = type(m).__mro__[2] if isinstance(m, _ImageStatsMixin) else type(m)
        m.__class__ = _image_class(base) if mode == "image" else base
    return n


def norm_eval_of(net: nn.Module) -> str:
    """``"image"`` when every BatchNorm layer of ``net`` uses per-image statistics, else ``"running"``."""
    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    return "image" if bns and all(isinstance(m, _ImageStatsMixin) for m in bns) else "running"


def apply_norm_eval(task: Any, net: nn.Module, mode: str) -> None:
    """:func:`set_norm_eval` on a task's network, refusing a task whose architecture does not record the mode
    (its model files and batons would silently go back to running statistics).

    Raises:
        InputError: an unknown mode, or ``"image"`` for a task that does not support it.
    """
    set_norm_eval(net, mode)
    if mode != "running" and task.architecture(net).get("norm_eval", "running") != mode:
        set_norm_eval(net, "running")
        raise InputError(f"task {task.spec.name!r} does not support norm_eval={mode!r} (its networks do not record it)")
