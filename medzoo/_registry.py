"""Task registry: names such as ``"fundus-vessels"`` map to Task objects.

Built-in tasks are listed by import path so that ``medzoo list`` and ``medzoo --help`` never import torch;
a task module is imported the first time :func:`get_task` asks for it. Third-party tasks use
:func:`register_task`. A duplicate name is an error (torchvision's rule, not timm's warning).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from medzoo.core import Task

# name -> "module:factory"; the factory is called with no arguments and returns a Task.
_BUILTIN: dict[str, str] = {
    "fundus-vessels": "medzoo.tasks.fundus:VesselTask",
    "fundus-disc": "medzoo.tasks.fundus:DiscCupTask",
    "mediastinum": "medzoo.tasks.mediastinum:MediastinumTask",
    "midline": "medzoo.tasks.midline:MidlineTask",
}
_USER: dict[str, Callable[[], Any]] = {}
_CACHE: dict[str, Any] = {}

T = TypeVar("T")


def register_task(name: str) -> Callable[[T], T]:
    """Register a task factory (a class with a no-argument constructor, or a function) under ``name``.

    Example:
        >>> from medzoo import register_task
        >>> @register_task("my-task")          # doctest: +SKIP
        ... class MyTask: ...
    """

    def deco(factory: T) -> T:
        if name in _BUILTIN or name in _USER:
            raise ValueError(f"task {name!r} is already registered")
        _USER[name] = factory  # type: ignore[assignment]
        return factory

    return deco


def list_tasks(pattern: str = "*") -> list[str]:
    """Names of all registered tasks matching the fnmatch ``pattern``, sorted. Imports nothing heavy."""
    return sorted(n for n in (*_BUILTIN, *_USER) if fnmatch(n, pattern))


def get_task(name: str) -> Task:
    """The Task object registered as ``name`` (one shared instance per name).

    Raises:
        UnknownTaskError: no such task (a ``KeyError``); the message lists the known names.
    """
    if name in _CACHE:
        return _CACHE[name]  # type: ignore[no-any-return]
    if name in _USER:
        factory: Callable[[], Any] = _USER[name]
    elif name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        factory = getattr(importlib.import_module(module), attr)
    else:
        from medzoo.errors import UnknownTaskError

        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}")
    task = factory()
    _CACHE[name] = task
    return task  # type: ignore[no-any-return]


def user_task_path(name: str) -> str | None:
    """``"module:qualname"`` of a task registered with :func:`register_task` (None for a built-in or unknown name), so
    that another process can register the same factory (:func:`register_task_path`)."""
    f = _USER.get(name)
    return None if f is None else f"{f.__module__}:{f.__qualname__}"


def register_task_path(name: str, path: str) -> None:
    """Register the factory at ``"module:qualname"`` under ``name``, unless ``name`` is known already."""
    if name in _BUILTIN or name in _USER:
        return
    module, qual = path.split(":")
    obj: Any = importlib.import_module(module)
    for attr in qual.split("."):
        obj = getattr(obj, attr)
    register_task(name)(obj)
