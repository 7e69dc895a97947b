"""medzoo: a model zoo for clinical imaging, trained by relay learning across sites that never connect.

Import stays light: torch, timm and smp are imported only when a task or the relay trainer is used.

Example:
    >>> import medzoo
    >>> sorted(medzoo.list_tasks())[:2]
    ['fundus-disc', 'fundus-vessels']
"""

from __future__ import annotations

from typing import Any

from medzoo._registry import get_task, list_tasks, register_task
from medzoo.errors import BatonError, InputError, MedzooError, WeightsError

__all__ = [
    "BatonError",
    "InputError",
    "MedzooError",
    "WeightsError",
    "__version__",
    "get_task",
    "list_tasks",
    "register_task",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("medzoo")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0+unknown"
    raise AttributeError(f"module 'medzoo' has no attribute {name!r}")
