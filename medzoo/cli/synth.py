"""``medzoo synth``: write a built-in synthetic site to a folder in the task's user layout.

This lets a relay be rehearsed exactly as a hospital runs it (``medzoo relay train --data DIR``) without any
patient data. Everything written is synthetic and says so in its labels file.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("synth", help="write a built-in SYNTHETIC site to a folder (for rehearsing a relay)")
    p.add_argument("task", help="a task with synthetic sites (mediastinum, midline)")
    p.add_argument("--site", required=True, help="synthetic site name (see the task's docs)")
    p.add_argument("--split", default="train", choices=("train", "test", "all"),
                   help="which of the site's cases to write (default train); recorded in the folder's split column")
    p.add_argument("--n", type=int, default=None, help="number of cases (default: the site's size)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from medzoo import get_task
    from medzoo.errors import InputError

    task = get_task(args.task)
    writer = getattr(task, "write_site", None)
    if writer is None or not task.spec.synthetic:
        raise InputError(f"task {args.task!r} has no synthetic sites to write; its built-in sites are real data: "
                         f"{', '.join(task.builtin_sites())}")
    if args.site not in task.builtin_sites():
        raise InputError(f"unknown site {args.site!r} for {args.task}; built-in sites: {', '.join(task.builtin_sites())}")
    written = writer(args.site, args.split, args.out, n=args.n)
    print(f"wrote SYNTHETIC site {args.site} ({args.split}) of task {args.task} to {args.out}: {written}")
    return 0
