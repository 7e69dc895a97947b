"""The baton: round trip, ledger chaining, HMAC, and a clear refusal for every kind of bad baton."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from medzoo.errors import BatonError
from medzoo.relay import api
from medzoo.relay.baton import FORMAT, Baton, entry_hash


@pytest.fixture()
def baton(toy, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    b0 = api.start(toy.spec.name, tmp_path / "0.baton", strategy="ewc", max_batches=2)
    return api.train(b0, "a", "site-a", tmp_path / "1.baton", epochs=1, progress=False)  # type: ignore[return-value]


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    p = tmp_path / "consortium.key"
    p.write_text("0123456789abcdef0123456789abcdef\n")
    return p


def _header(path: Path) -> dict:  # type: ignore[type-arg]
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n])["__metadata__"]


def test_round_trip_and_ledger(baton: Path, toy) -> None:  # type: ignore[no-untyped-def]
    b = Baton.read(baton, expect_task=toy.spec.name)
    assert b.sites == ["site-a"] and b.n_seen == 24 and b.strategy == "ewc"
    assert [e["kind"] for e in b.ledger] == ["start", "train"]
    assert b.ledger[1]["prev_hash"] == b.ledger[0]["hash"] == entry_hash(b.ledger[0])
    assert b.ledger[1]["weights_sha256"] == b.weights_sha256
    assert {"site", "order", "n_samples", "epochs", "metrics", "strategy", "medzoo_version", "started", "finished",
            "weights_sha256", "prev_hash", "hash"} <= set(b.ledger[1])
    assert "accuracy" in b.ledger[1]["metrics"]["site-a"]
    b.write(baton.with_name("copy.baton"))
    again = Baton.read(baton.with_name("copy.baton"))
    assert again.content_sha256() == b.content_sha256()
    assert all(torch.equal(again.model_state[k], v) for k, v in b.model_state.items())


def test_baton_holds_only_expected_named_tensors(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A baton from a real (toy) relay run with replay: model weights and strategy state, never an image."""
    b0 = api.start(toy.spec.name, tmp_path / "0.baton", strategy="relay", gen_epochs=1, gen_size=16)
    b1 = api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, progress=False)
    tensors = load_file(str(b1))
    net = toy.build_model()
    model_names = {f"model/{k}" for k in net.state_dict()}
    strategy_names = {k for k in tensors if k.startswith("strategy/")}
    assert set(tensors) == model_names | strategy_names
    assert strategy_names and all(k.startswith(("strategy/generator.", "strategy/generator_config", "strategy/generator_sites"))
                                  for k in strategy_names)
    images = torch.stack([toy.build_dataset("a", "train")[i]["image"] for i in range(24)])
    for k, t in tensors.items():
        assert not (t.dim() == 4 and tuple(t.shape[1:]) == tuple(images.shape[1:])), k  # no (N, 3, 16, 16) images
        flat = t.flatten().float()
        if flat.numel() >= images[0].numel():
            for img in images:  # no training image stored verbatim anywhere in any tensor
                assert not torch.isin(img.flatten()[:32], flat).all(), k
    assert set(_header(b1)) == {"format", "baton", "integrity"}


def test_real_fundus_baton_holds_weights_and_generator_only(data_root: Path, tmp_path: Path) -> None:
    """A baton after a relay lap on real DRIVE images, replay on: the vessel network's weights and the generator's,
    nothing shaped like an image and no training patch stored verbatim."""
    from medzoo import get_task

    task = get_task("fundus-vessels")
    b0 = api.start("fundus-vessels", tmp_path / "0.baton", strategy="relay", gen_epochs=1, gen_size=32, gen_max_samples=8)
    b1 = api.train(b0, "drive", "drive", tmp_path / "1.baton", epochs=1, batch_size=2, max_samples=4,
                   eval_split=None, amp=False, progress=False)
    tensors = load_file(str(b1))
    model_names = {f"model/{k}" for k in task.build_model().state_dict()}
    strategy_names = set(tensors) - model_names
    assert model_names <= set(tensors)
    assert strategy_names and all(k.startswith(("strategy/generator.", "strategy/generator_config", "strategy/generator_sites"))
                                  for k in strategy_names), sorted(strategy_names)[:5]
    for k, t in tensors.items():  # conv kernels are at most 7x7; an image or patch would be 32 px and more
        assert t.dim() < 3 or max(t.shape[-2:]) <= 7, (k, tuple(t.shape))
    ds = api.subset(task.build_dataset("drive", "train", augment=False), 8)
    for i in range(len(ds)):
        windows = ds[i]["image"].flatten().unfold(0, 16, 16)  # 16 consecutive pixels: the most varied run
        probe = windows[windows.std(1).argmax()]
        assert probe.unique().numel() >= 8
        for k, t in tensors.items():
            if t.is_floating_point() and t.numel() >= probe.numel():
                assert not torch.isin(probe, t.flatten().float()).all(), k
    entry = api.inspect(b1)["ledger"][-1]
    assert entry["site"] == "drive" and entry["n_samples"] == 4 and entry["note"]["generator"]["trained_on_this_site"]


def test_refuses_truncated(baton: Path) -> None:
    raw = baton.read_bytes()
    for cut in (4, 100, len(raw) // 2, len(raw) - 1):
        bad = baton.with_name(f"cut{cut}.baton")
        bad.write_bytes(raw[:cut])
        with pytest.raises(BatonError, match="truncated|not a safetensors"):
            Baton.read(bad)


def test_refuses_edited_weights(baton: Path) -> None:
    raw = bytearray(baton.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the last tensor's data
    bad = baton.with_name("edited.baton")
    bad.write_bytes(bytes(raw))
    with pytest.raises(BatonError, match="content hash mismatch"):
        Baton.read(bad)


def test_refuses_edited_ledger(baton: Path) -> None:
    tensors, meta = load_file(str(baton)), _header(baton)
    m = json.loads(meta["baton"])
    m["ledger"][1]["n_samples"] = 5000  # claim more data than was used
    bad = baton.with_name("ledger.baton")
    save_file(tensors, str(bad), metadata={**meta, "baton": json.dumps(m)})
    with pytest.raises(BatonError, match="content hash mismatch"):
        Baton.read(bad)
    # A forger who also recomputes the content hash still breaks the entry hash / chain.
    b = Baton.read(baton)
    b.ledger[1]["n_samples"] = 5000
    b.write(bad)
    with pytest.raises(BatonError, match="entry 1 was edited"):
        Baton.read(bad)
    b = Baton.read(baton)
    del b.ledger[0]
    b.write(bad)
    with pytest.raises(BatonError, match="start entry|chain broken"):
        Baton.read(bad)


def test_refuses_foreign_files(baton: Path, toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = api.export(baton, tmp_path / "model.safetensors")
    with pytest.raises(BatonError, match="not a medzoo relay baton.*model file"):
        Baton.read(model)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BatonError, match="not a medzoo relay baton"):
        Baton.read(tmp_path / "other.safetensors")
    (tmp_path / "text.baton").write_text("hello, I am not a baton at all, just some text" * 3)
    with pytest.raises(BatonError):
        Baton.read(tmp_path / "text.baton")
    with pytest.raises(BatonError, match="no such baton"):
        Baton.read(tmp_path / "missing.baton")


def test_refuses_other_task_and_newer_format(baton: Path) -> None:
    with pytest.raises(BatonError, match="for task 'toy-relay', not 'fundus-vessels'"):
        Baton.read(baton, expect_task="fundus-vessels")
    with pytest.raises(BatonError, match="for task"):
        api.train(baton, "b", "b", baton.with_name("x.baton"), epochs=1, expect_task="midline", progress=False)
    b = Baton.read(baton)
    b.format = "medzoo.baton/2"
    b.write(baton.with_name("v2.baton"))
    with pytest.raises(BatonError, match="newer medzoo"):
        Baton.read(baton.with_name("v2.baton"))
    assert FORMAT == "medzoo.baton/1"


def test_hmac_signature(baton: Path, key: Path, tmp_path: Path) -> None:
    signed = Baton.read(baton).write(tmp_path / "signed.baton", key_file=key)
    b = Baton.read(signed, key_file=key)
    assert b.signed and b.signature_checked
    assert Baton.read(signed).signed and not Baton.read(signed).signature_checked
    other = tmp_path / "other.key"
    other.write_text("fedcba9876543210fedcba9876543210")
    with pytest.raises(BatonError, match="does not match this key"):
        Baton.read(signed, key_file=other)
    with pytest.raises(BatonError, match="not signed"):
        Baton.read(baton, key_file=key)
    short = tmp_path / "short.key"
    short.write_text("abc")
    with pytest.raises(BatonError, match="too short"):
        Baton.read(signed, key_file=short)
    # a site with the key signs the next baton too
    nxt = api.train(signed, "b", "b", tmp_path / "next.baton", epochs=1, key_file=key, progress=False)
    assert Baton.read(nxt, key_file=key).signature_checked  # type: ignore[arg-type]


def test_nothing_overwritten_on_error(baton: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.baton"
    out.write_bytes(b"precious")
    raw = bytearray(baton.read_bytes())
    raw[-3] ^= 0xFF
    bad = tmp_path / "bad.baton"
    bad.write_bytes(bytes(raw))
    with pytest.raises(BatonError):
        api.train(bad, "b", "b", out, epochs=1, overwrite=True, progress=False)
    with pytest.raises(BatonError, match="already exists"):
        api.train(baton, "b", "b", out, epochs=1, progress=False)
    with pytest.raises(BatonError):
        api.evaluate(bad, "b", "b")
    assert out.read_bytes() == b"precious"
    assert bad.read_bytes() == bytes(raw)  # evaluate did not touch the refused baton
    assert not list(tmp_path.glob(".*.part"))  # no temporary files left behind
