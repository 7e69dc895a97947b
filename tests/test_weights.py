"""Every shipped weight: its model card follows the schema, its checksum holds, its parameter count is true
(torchvision's test_schema_meta_validation, run always rather than behind a flag)."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from medzoo import get_task, weights
from medzoo.errors import WeightsError
from medzoo.weights import WeightsMeta, list_weights

CARDS = list_weights()


@pytest.mark.parametrize("meta", CARDS, ids=[m.name for m in CARDS])
def test_model_card_schema(meta: WeightsMeta) -> None:
    for f in fields(WeightsMeta):
        if f.name not in ("training_cost", "extra", "synthetic"):
            assert getattr(meta, f.name) not in ("", [], {}, None), f"{meta.name}: empty field {f.name}"
    assert meta.file == f"{meta.name}.safetensors"
    assert meta.task in __import__("medzoo").list_tasks()
    for test_set, values in meta.metrics.items():
        assert values and all(isinstance(v, (int, float)) for v in values.values()), test_set
    if meta.synthetic:
        assert meta.summary.upper().startswith("SYNTHETIC"), "a synthetic model card must say so first"
    script = next((w for w in meta.recipe.split() if w.endswith(".py")), None)
    assert script is not None and (Path(__file__).resolve().parents[1] / script).is_file(), \
        f"{meta.name}: recipe {meta.recipe!r} does not name a script in this repository"


@pytest.mark.parametrize("meta", CARDS, ids=[m.name for m in CARDS])
def test_weights_load_checksum_and_param_count(meta: WeightsMeta) -> None:
    weights.verify(meta)
    header_len = int.from_bytes(meta.path.read_bytes()[:8], "little")
    header = json.loads(meta.path.read_bytes()[8 : 8 + header_len])
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert "F32" not in dtypes, "shipped weights are stored in fp16"
    task = get_task(meta.task)
    model = weights.load_pretrained(task, meta.name)
    assert sum(p.numel() for p in model.net.parameters()) == meta.num_params
    assert meta.path.stat().st_size < 40 * 2**20


@pytest.mark.parametrize("meta", CARDS[:1], ids=[m.name for m in CARDS[:1]])
def test_corrupted_weights_are_refused(meta: WeightsMeta, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(meta.path, tmp_path / meta.file)
    shutil.copy(meta.path.with_suffix(".json"), tmp_path / f"{meta.name}.json")
    data = bytearray((tmp_path / meta.file).read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / meta.file).write_bytes(bytes(data))
    monkeypatch.setattr(weights, "weights_dir", lambda: tmp_path)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.load_pretrained(get_task(meta.task), meta.name)
    (tmp_path / meta.file).unlink()
    with pytest.raises(WeightsError, match="missing"):
        weights.load_pretrained(get_task(meta.task), meta.name)


def test_unknown_weights_name_lists_available() -> None:
    with pytest.raises(WeightsError, match="no shipped weights named"):
        weights.get_weights("nope")


def test_model_files_loaded_by_path_check_themselves(tmp_path: Path) -> None:
    """A model file medzoo writes carries its tensor data's sha256 in the header and is refused when a bit flips
    (an exported baton loaded by path once ran with a flipped bit); a byte-for-byte copy of shipped weights (written
    before files carried the checksum) is recognised by its card and gets the card's metadata; any other file without
    a checksum loads with a warning that its integrity cannot be checked."""
    import warnings

    from medzoo.core import load_model
    from medzoo.errors import MedzooWarning

    meta = next(m for m in CARDS if m.name == "midline")
    task = get_task(meta.task)
    tm = weights.load_pretrained(task, meta.name)
    out = tm.save(tmp_path / "mine.safetensors")
    assert "tensors_sha256" in json.loads(out.read_bytes()[8 : 8 + int.from_bytes(out.read_bytes()[:8], "little")])["__metadata__"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(out)  # intact: no warning, no error
        copy = Path(shutil.copy(meta.path, tmp_path / "copy.safetensors"))
        assert load_model(copy).meta["extra"] == meta.extra  # the card's settings, as load_pretrained gives them
    data = bytearray(out.read_bytes())
    data[-10] ^= 0x40
    (tmp_path / "flip.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="flip.safetensors: the tensor data do not match the sha256"):
        load_model(tmp_path / "flip.safetensors")
    old = bytearray(copy.read_bytes())
    old[-10] ^= 0x40
    (tmp_path / "old.safetensors").write_bytes(bytes(old))
    with pytest.warns(MedzooWarning, match="old.safetensors: no checksum .* integrity cannot be verified"):
        load_model(tmp_path / "old.safetensors")


@pytest.mark.parametrize("task_name", sorted({m.task for m in CARDS}))
def test_a_model_file_of_another_task_is_refused_by_name(task_name: str) -> None:
    """`relay start --task mediastinum --init midline.safetensors` once ended in a TypeError traceback from the
    network builder (found by an audit); every task now names the file and the two tasks."""
    other = next(m for m in CARDS if m.task != task_name)
    with pytest.raises(WeightsError, match=f"this model is for task '{other.task}', not '{task_name}'"):
        get_task(task_name).build_model(weights=str(other.path))
