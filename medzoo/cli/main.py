"""Entry point of the ``medzoo`` command: builds the argument parser from the command modules and dispatches.

Each command module has ``register(subparsers)`` that adds its parsers and sets ``func`` (a handler taking the
parsed args and returning an exit code). Modules import torch and the tasks only inside handlers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Albumentations checks PyPI for updates on import unless told not to: medzoo never touches the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_COMMAND_MODULES = ("medzoo.cli.models", "medzoo.cli.relay", "medzoo.cli.synth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medzoo",
        description="medzoo: clinical-imaging model zoo trained by relay learning (the model travels, the data stays).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        module.register(sub)
    return parser


def check_device(device: str) -> None:
    """Refuse a ``--device`` torch does not know, or a GPU this machine does not have, before any work."""
    import torch

    from medzoo.errors import InputError

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"--device {device!r} is not a device (use cpu, cuda or cuda:N)") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA GPU is available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise InputError(f"--device {device!r}: medzoo runs on cpu or cuda")


def main(argv: Sequence[str] | None = None) -> int:
    from medzoo.errors import MedzooError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import medzoo

        print(f"medzoo {medzoo.__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    import warnings

    from medzoo.errors import MedzooWarning

    default_format = warnings.formatwarning

    def _format(msg, cat, *a, **k):  # type: ignore[no-untyped-def]  # ours read as messages, not as source lines
        return f"medzoo: warning: {msg}\n" if issubclass(cat, MedzooWarning) else default_format(msg, cat, *a, **k)

    warnings.formatwarning = _format
    try:
        if getattr(args, "device", None) not in (None, "cpu"):  # "cpu" needs no check (nor a torch import)
            check_device(args.device)
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that closed the pipe shows here, in the handler below, not at interpreter exit
        return rc
    except MedzooError as e:
        print(f"medzoo: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and cut short: stop quietly, like other command-line tools
        import os

        try:  # the Python docs' recipe: point stdout at devnull, so the flush at exit raises nothing either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except OSError as e:  # an unwritable --out, a full disk, read-only media: the file and the reason, no traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"medzoo: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medzoo: interrupted; finished files are in place, partial ones were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
