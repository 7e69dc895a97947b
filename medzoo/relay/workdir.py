"""The checkpoint folder a relay lap trains in: medzoo only ever deletes what it wrote there."""

from __future__ import annotations

import json
from pathlib import Path

from medzoo.errors import BatonError
from medzoo.relay.trainer import CHECKPOINT_NAME

WORK_MARKER = ".medzoo-relay-work"  # written into a checkpoint folder when medzoo takes it; says the folder is medzoo's


def is_checkpoint_file(name: str) -> bool:
    """A file the trainer writes into the checkpoint folder (the checkpoint, or a temporary one being written)."""
    return name == CHECKPOINT_NAME or (name.startswith(f".{CHECKPOINT_NAME}.") and name.endswith(".part"))


def prepare_work_dir(work: Path, *, default: bool, create: bool) -> None:
    """Check that ``work`` can serve as medzoo's checkpoint folder, before any training; create and mark it.

    Accepted: a folder that does not exist yet (created, with the marker), an empty folder (marked), or a folder
    holding only medzoo's files (the marker, checkpoint files); a default ``.<out>.work`` folder of an earlier
    medzoo without the marker counts as medzoo's when it holds only checkpoint files.

    Raises:
        BatonError: ``work`` is a file, or holds anything else (nothing is deleted, nothing is trained).
    """
    if work.exists() and not work.is_dir():
        raise BatonError(f"{work}: --work-dir (work_dir=) is a file, not a folder; give a folder for the checkpoints")
    if work.is_dir():
        names = sorted(p.name for p in work.iterdir())
        foreign = [n for n in names if n != WORK_MARKER and not is_checkpoint_file(n)]
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise BatonError(f"{work}: --work-dir (work_dir=) holds files medzoo did not write ({shown}); medzoo "
                             "deletes its checkpoint folder after training, so it needs one of its own: give a new or "
                             "empty folder (the default is .<out>.work beside --out)")
        if names and WORK_MARKER not in names and not default:
            raise BatonError(f"{work}: --work-dir (work_dir=) holds {', '.join(names)} but no {WORK_MARKER} marker, "
                             "so it is not a checkpoint folder medzoo made; give a new or empty folder")
    if create:
        created = default or not work.exists()  # the default .<out>.work folder is always medzoo's
        work.mkdir(parents=True, exist_ok=True)
        marker = work / WORK_MARKER
        if not marker.exists():  # the marker says whether medzoo made the folder (then it may remove it, if empty)
            marker.write_text(json.dumps({"what": "checkpoint folder of `medzoo relay train`; medzoo removes its own "
                                                  "files here after training", "created_folder": created}) + "\n")


def clean_work_dir(work: Path, *, keep_marker: bool = False) -> None:
    """Remove medzoo's own files from ``work`` (checkpoints; the marker unless ``keep_marker``), then the folder
    itself if medzoo created it and it is empty. Nothing else is ever deleted."""
    if not work.is_dir():
        return
    try:  # a folder medzoo did not create (an empty one the user gave) stays; a legacy default folder goes
        created = bool(json.loads((work / WORK_MARKER).read_text()).get("created_folder", True))
    except (OSError, ValueError, AttributeError):
        created = True
    for p in work.iterdir():
        if is_checkpoint_file(p.name) or (p.name == WORK_MARKER and not keep_marker):
            try:
                p.unlink()
            except OSError:
                pass
    if not keep_marker and created:
        try:
            work.rmdir()  # fails, harmlessly, when anything else is there
        except OSError:
            pass
