"""Parallel simulation: the parts of a :func:`~medzoo.relay.simulate.simulate` call (one per strategy and order, one per
baseline group) run as separate processes on this machine, several of which can share one GPU.

Each part is an ordinary ``simulate`` call of its own, in ``<out>/parts/<label>/``, run by this module as a worker
(``python -m medzoo.relay.parallel JSON``); the calling ``simulate`` then takes every part's results over through
its ``reuse`` mechanism, exactly as it takes over the runs of an earlier invocation. A part finished before an
interruption is therefore kept: rerunning the same call trains only the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PART_RESULTS = "relay_results.json"


def run_parts(parts: Sequence[dict[str, Any]], jobs: int, log: Callable[[str], None] = print) -> list[Path]:
    """Run each part (``{"label", "dir", "kwargs"}``: keyword arguments of ``simulate``) as a worker process, at most
    ``jobs`` at a time; return their results files.

    A part that fails stops everything with the path of its log (``<dir>/part.log``); an interrupt or a kill of this
    process stops the running parts too.

    Raises:
        RuntimeError: a part's process exited with an error.
    """
    todo, running, done = list(parts), [], []  # type: ignore[var-annotated]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the caller's modules, tasks too
    before = signal.signal(signal.SIGTERM, signal.default_int_handler) if _main_thread() else None
    try:
        while todo or running:
            while todo and len(running) < jobs:
                part = todo.pop(0)
                d = Path(part["dir"])
                d.mkdir(parents=True, exist_ok=True)
                logf = open(d / "part.log", "w")  # noqa: SIM115 - closed when the process ends
                cmd = [sys.executable, "-m", "medzoo.relay.parallel", json.dumps(part)]
                running.append((part, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env), logf))
                log(f"  part {part['label']}: started ({len(running)} running, {len(todo)} waiting)")
            time.sleep(0.5)
            for item in list(running):
                part, proc, logf = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                logf.close()
                if proc.returncode != 0:
                    raise RuntimeError(f"part {part['label']} failed (exit {proc.returncode}): see {Path(part['dir']) / 'part.log'}")
                done.append(Path(part["dir"]) / PART_RESULTS)
                log(f"  part {part['label']}: done")
    finally:
        for _, proc, logf in running:
            proc.terminate()
            logf.close()
        if before is not None:
            signal.signal(signal.SIGTERM, before)
    return done


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _worker(spec: dict[str, Any]) -> int:
    import torch

    from medzoo._registry import register_task_path
    from medzoo.relay.simulate import Budget, simulate

    kw = dict(spec["kwargs"])
    if spec.get("task_factory"):  # a task the caller registered at run time
        register_task_path(kw["task_name"], spec["task_factory"])
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    kw["budget"] = Budget(**kw["budget"])
    simulate(out=spec["dir"], **kw)
    return 0


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1])))
