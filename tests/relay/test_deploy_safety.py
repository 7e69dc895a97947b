"""Deployment safety of the relay steps: the checkpoint folder, signed batons, resuming, argument checks, --out,
the inspect display, the replay switch and the key file (each test fails without its fix)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from medzoo.errors import BatonError, InputError
from medzoo.relay import api
from medzoo.relay.baton import Baton, read_key

HEX_KEY = "00112233445566778899aabbccddeeff" * 2


def _start(toy, tmp_path: Path, name: str = "0.baton", key: Path | None = None, **kw) -> Path:  # type: ignore[no-untyped-def]
    kw.setdefault("strategy", "naive")
    return api.start(toy.spec.name, tmp_path / name, key_file=key, **kw)


def _key(tmp_path: Path) -> Path:
    k = tmp_path / "relay.key"
    k.write_text(HEX_KEY + "\n")
    return k


def _strict_header(path: Path) -> dict:  # type: ignore[type-arg]
    """The baton's header, parsed as strict JSON (NaN/Infinity refused)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")

    def bad(c: str) -> None:
        raise ValueError(f"non-JSON constant {c}")

    header = json.loads(raw[8:8 + n])["__metadata__"]
    return json.loads(header["baton"], parse_constant=bad)  # type: ignore[no-any-return]


# -- 1. the checkpoint folder: never delete what medzoo did not write -------------------------------------------
def test_work_dir_current_folder_is_refused_and_nothing_deleted(toy, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medzoo.cli.main import main

    site = tmp_path / "site-c"
    site.mkdir()
    key = _key(site)
    b0 = _start(toy, site, "lap1.baton", key=key)
    monkeypatch.chdir(site)
    before = sorted(p.name for p in site.iterdir())
    rc = main(["relay", "train", "lap1.baton", "--data", "a", "--site", "c", "--key-file", "relay.key", "--out",
               "lap2.baton", "--epochs", "1", "--work-dir", ".", "--quiet"])
    assert rc == 2
    assert sorted(p.name for p in site.iterdir()) == before  # the arriving baton and the key are still there
    assert b0.is_file() and key.read_text().strip() == HEX_KEY and not (site / "lap2.baton").exists()


def test_work_dir_with_a_user_file_is_refused_before_training(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b0 = _start(toy, tmp_path)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    (ckpts / "notes.txt").write_text("mine")
    for resume in (True, False):  # --no-resume too
        with pytest.raises(BatonError, match="ckpts.*notes.txt"):
            api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, work_dir=ckpts, resume=resume, progress=False)
        assert (ckpts / "notes.txt").read_text() == "mine" and sorted(p.name for p in ckpts.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "1.baton").exists()


def test_work_dir_cleanup_removes_only_medzoo_files(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b0 = _start(toy, tmp_path)
    # a folder medzoo creates goes after success
    new = tmp_path / "deep" / "ckpts"
    api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, work_dir=new, progress=False)
    assert not new.exists() and (tmp_path / "deep").is_dir()
    # an empty folder the user gave stays (empty); a killed run's folder is accepted for resuming
    mine = tmp_path / "mine"
    mine.mkdir()
    assert api.train(b0, "a", "a", tmp_path / "2.baton", epochs=2, work_dir=mine, progress=False,
                     _stop_after_epochs=1) is None
    assert (mine / "checkpoint.pt").is_file() and (mine / api.WORK_MARKER).is_file()
    b2 = api.train(b0, "a", "a", tmp_path / "2.baton", epochs=2, work_dir=mine, progress=False)
    assert Baton.read(b2).ledger[-1]["train_config"]["resumed_from_epoch"] == 1  # type: ignore[arg-type]
    assert mine.is_dir() and list(mine.iterdir()) == []
    # --no-resume deletes only the checkpoint of the earlier run
    assert api.train(b0, "a", "a", tmp_path / "3.baton", epochs=2, work_dir=mine, progress=False,
                     _stop_after_epochs=1) is None
    b3 = api.train(b0, "a", "a", tmp_path / "3.baton", epochs=2, work_dir=mine, progress=False, resume=False)
    assert Baton.read(b3).ledger[-1]["train_config"]["resumed_from_epoch"] == 0  # type: ignore[arg-type]
    assert list(mine.iterdir()) == []


# -- 2. a signed baton stays signed -----------------------------------------------------------------------------
def test_signed_baton_needs_the_key_to_train_or_evaluate(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = _key(tmp_path)
    b0 = _start(toy, tmp_path, key=key)
    with pytest.raises(BatonError, match="signed.*--key-file"):
        api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, progress=False)
    assert not (tmp_path / "1.baton").exists() and not (tmp_path / ".1.baton.work").exists()
    b1 = api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, progress=False, key_file=key)
    before = b1.read_bytes()  # type: ignore[union-attr]
    with pytest.raises(BatonError, match="signed.*--key-file"):
        api.evaluate(b1, "b", "b")  # type: ignore[arg-type]
    assert b1.read_bytes() == before  # type: ignore[union-attr]
    api.evaluate(b1, "b", "b", key_file=key)  # type: ignore[arg-type]
    assert api.verify(b1, key_file=key)["signature_checked"]  # type: ignore[arg-type]
    # its model is exported or used only once the signature is checked (a rewritten baton with recomputed hashes
    # once exported without a word)
    with pytest.raises(BatonError, match="signed.*--key-file.*before exporting"):
        api.export(b1, tmp_path / "m.safetensors")  # type: ignore[arg-type]
    with pytest.raises(BatonError, match="signed.*--key-file.*before using its model"):
        api.model(b1)  # type: ignore[arg-type]
    assert not (tmp_path / "m.safetensors").exists()
    api.export(b1, tmp_path / "m.safetensors", key_file=key)  # type: ignore[arg-type]
    api.model(b1, key_file=key)  # type: ignore[arg-type]
    # the docs' Python sequence passes the key to evaluate and export, and their commands to export
    doc = (Path(__file__).resolve().parents[2] / "docs" / "relay.md").read_text()
    assert 'api.evaluate("lap1.baton", "/data/retina", site="hospital-1", key_file="relay.key")' in doc
    assert 'api.export("lap1.baton", "relay-model.safetensors", key_file="relay.key")' in doc
    assert "medzoo relay export lap2.baton --key-file relay.key" in doc
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert all("--key-file" in line for line in readme.splitlines() if line.startswith("medzoo relay export"))


# -- 3. resuming only from a checkpoint of the same run, data included -------------------------------------------
def test_resume_ignores_checkpoint_of_other_data(toy, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    b0 = _start(toy, tmp_path)
    out = tmp_path / "1.baton"
    kw = dict(epochs=3, lr=0.01, progress=False)
    assert api.train(b0, "a", "a", out, _stop_after_epochs=2, **kw) is None  # type: ignore[arg-type]
    # other data, same site name: the checkpoint is not this run's
    assert api.train(b0, "b", "a", out, _stop_after_epochs=2, **kw) is None  # type: ignore[arg-type]
    assert "ignoring the checkpoint" in capsys.readouterr().err
    # another max_samples: not this run's either
    assert api.train(b0, "b", "a", out, max_samples=10, _stop_after_epochs=2, **kw) is None  # type: ignore[arg-type]
    assert "ignoring the checkpoint" in capsys.readouterr().err
    api.train(b0, "b", "a", out, max_samples=10, **kw)  # type: ignore[arg-type]
    assert "resuming at epoch 3 of 3" in capsys.readouterr().err
    e = Baton.read(out).ledger[-1]
    assert e["train_config"]["resumed_from_epoch"] == 2 and e["n_samples"] == 10


# -- 4. argument checks, and no NaN in the baton JSON -----------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "0"), ("--max-samples", "0"),
                                        ("--num-workers", "-1"), ("--epochs", "x")])
def test_cli_train_refuses_bad_numbers(toy, tmp_path: Path, capsys, flag: str, value: str) -> None:  # type: ignore[no-untyped-def]
    from medzoo.cli.main import main

    b0 = _start(toy, tmp_path)
    with pytest.raises(SystemExit) as ex:
        main(["relay", "train", str(b0), "--data", "a", "--site", "a", "--out", str(tmp_path / "1.baton"), flag, value])
    assert ex.value.code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "1.baton").exists()


def test_api_train_refuses_bad_numbers_and_baton_json_is_strict(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b0 = _start(toy, tmp_path)
    for kw in ({"epochs": 0}, {"batch_size": 0}, {"max_samples": 0}, {"num_workers": -1}):
        with pytest.raises(InputError):
            api.train(b0, "a", "a", tmp_path / "1.baton", progress=False, **{"epochs": 1, **kw})  # type: ignore[arg-type]
    assert not (tmp_path / "1.baton").exists()
    b = Baton.read(b0)
    e = b.append({"kind": "evaluate", "site": "a", "metrics": {"a": {"auroc": float("nan"), "x": float("inf"), "ok": 0.5}}})
    assert e["metrics"]["a"] == {"auroc": None, "x": None, "ok": 0.5}
    out = b.write(tmp_path / "nan.baton")
    meta = _strict_header(out)
    assert meta["ledger"][-1]["metrics"]["a"]["auroc"] is None and Baton.read(out).ledger[-1]["hash"] == e["hash"]
    # a NaN that got past append (older medzoo) is refused at write, not written as bare NaN
    b.ledger[-1]["metrics"]["a"]["ok"] = math.nan
    with pytest.raises(BatonError, match="NaN"):
        b.write(tmp_path / "bad.baton")
    assert not (tmp_path / "bad.baton").exists()


# -- 5. --out: evaluate refuses an existing file; train never replaces the arriving baton ------------------------
def test_evaluate_out_existing_and_train_out_is_input(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from medzoo.cli.main import main

    b0 = _start(toy, tmp_path)
    b1 = api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, progress=False)
    other = tmp_path / "other.txt"
    other.write_text("keep")
    assert main(["relay", "evaluate", str(b1), "--data", "b", "--site", "b", "--out", str(other)]) == 2
    assert other.read_text() == "keep"
    assert main(["relay", "evaluate", str(b1), "--data", "b", "--site", "b", "--out", str(other), "--overwrite"]) == 0
    assert Baton.read(other).ledger[-1]["kind"] == "evaluate"
    # --out naming the baton itself is the default in-place update
    assert main(["relay", "evaluate", str(b1), "--data", "b", "--site", "b", "--out", str(b1)]) == 0
    before = b0.read_bytes()
    same = tmp_path / "." / "0.baton"
    assert main(["relay", "train", str(b0), "--data", "a", "--site", "a", "--out", str(same), "--overwrite",
                 "--epochs", "1", "--quiet"]) == 2
    with pytest.raises(BatonError, match="arriving baton"):
        api.train(b0, "a", "a", b0, epochs=1, overwrite=True, progress=False)
    assert b0.read_bytes() == before


# -- 6. inspect shows the primary metric first, no counts ---------------------------------------------------------
def test_inspect_short_metrics_primary_first_no_counts() -> None:
    from medzoo.cli.relay import _fmt_metrics

    m = {"s": {"accuracy": 0.7, "auroc_a": 0.6, "auroc_classes": 5.0, "auroc_macro": 0.8, "n": 40, "n_pos": 3}}
    text = _fmt_metrics(m, "auroc_macro")
    assert text.startswith("s: auroc_macro=0.8000")
    assert "auroc_classes" not in text and "n=" not in text and "n_pos" not in text


# -- 7. replay cannot be switched on at a site of a relay started without it -------------------------------------
def test_replay_on_refused_when_relay_started_without_replay(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b0 = _start(toy, tmp_path, strategy="relay", replay=False, gen_epochs=1, gen_size=16)
    with pytest.raises(BatonError, match="replay=false"):
        api.train(b0, "a", "a", tmp_path / "1.baton", epochs=1, replay=True, progress=False)
    assert not (tmp_path / "1.baton").exists()


# -- 8. a hex key reads the same across line breaks and line-ending conversions -----------------------------------
def test_hex_key_split_over_lines_survives_crlf(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lf, crlf = tmp_path / "lf.key", tmp_path / "crlf.key"
    lf.write_bytes(HEX_KEY[:60].encode() + b"\n" + HEX_KEY[60:].encode() + b"\n")  # what `xxd -p` writes
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    assert read_key(lf) == read_key(crlf) == HEX_KEY.encode()
    b0 = _start(toy, tmp_path, key=lf)
    assert api.verify(b0, key_file=crlf)["signature_checked"]
    # a key that is not hex keeps its inner bytes
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"not hex at all, \n a passphrase\n")
    assert read_key(raw) == b"not hex at all, \n a passphrase"


def test_data_of_another_task_names_the_batons_task(tmp_path: Path) -> None:
    """A site handed the baton of another task once saw only a folder-layout complaint."""
    b0 = api.start("mediastinum", tmp_path / "0.baton")
    (tmp_path / "fundus_site" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="this baton is for task 'mediastinum'.*a mediastinum site"):
        api.train(b0, tmp_path / "fundus_site", "x", tmp_path / "1.baton", epochs=1, progress=False)
    with pytest.raises(InputError, match="this baton is for task 'mediastinum'"):
        api.evaluate(b0, tmp_path / "fundus_site", "x")
    assert not (tmp_path / "1.baton").exists()
    # a site of the right task that only lacks the split gets the plain message, not the question whether it is one
    from medzoo import get_task

    get_task("mediastinum").write_site("synth-a", "test", tmp_path / "test_only", n=1)
    with pytest.raises(InputError, match="no 'train' cases in labels.csv") as e:
        api.train(b0, tmp_path / "test_only", "x", tmp_path / "1.baton", epochs=1, progress=False)
    assert "is this baton" not in str(e.value) and "a mediastinum site?" not in str(e.value)


def test_results_on_training_samples_are_not_called_held_out(toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """At a site folder without a split file (fundus: every image in every split) the images a site had just trained
    on were measured after training and recorded in the ledger as its test result; an evaluation lap there was
    recorded as held out too."""
    from medzoo.cli.main import main

    build = type(toy).build_dataset

    def no_split_file_at_a(self, source, split, *, augment=False):  # type: ignore[no-untyped-def]
        return build(self, source, "train" if str(source) == "a" and split == "test" else split, augment=augment)

    monkeypatch.setattr(type(toy), "build_dataset", no_split_file_at_a)
    b1 = api.train(_start(toy, tmp_path), "a", "a", tmp_path / "1.baton", epochs=1, progress=False)
    measured = Baton.read(b1).ledger[-1]["metrics"]["a"]
    assert "accuracy" not in measured and measured["skipped"].startswith("24 of the 24 samples of this site's 'test'")
    b2 = api.train(b1, "b", "b", tmp_path / "2.baton", epochs=1, progress=False)
    assert "accuracy" in Baton.read(b2).ledger[-1]["metrics"]["b"]  # a site with a held-out split is measured
    with pytest.warns(UserWarning, match="if this site trained on them, this is not a held-out result"):
        api.evaluate(b2, "a", "a")
    lap = Baton.read(b2).ledger[-1]
    assert lap["held_out"] is False and "accuracy" in lap["metrics"]["a"] and "24 of the 24" in lap["caveat"]
    api.evaluate(b2, "b", "b")
    assert "held_out" not in Baton.read(b2).ledger[-1] and "caveat" not in Baton.read(b2).ledger[-1]
    capsys.readouterr()
    assert main(["relay", "train", str(b2), "--data", "a", "--site", "a", "--out", str(tmp_path / "3.baton"),
                 "--epochs", "1", "--quiet"]) == 0  # says why the site has no result, rather than printing {}
    assert "no test metrics recorded at a: 24 of the 24 samples" in capsys.readouterr().out
    assert main(["relay", "evaluate", str(b2), "--data", "a", "--site", "a"]) == 0
    run = capsys.readouterr()
    assert "evaluation lap at a [test, NOT held out]" in run.out and "note: a: 24 of the 24" in run.err
    assert main(["relay", "inspect", str(b2)]) == 0
    shown = capsys.readouterr().out
    assert shown.count("[test, NOT held out]") == 2 and "evaluate b [test] after" in shown


def test_simulate_refuses_a_site_folder_without_held_out_test_samples(toy, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """simulate measured the accuracy matrix on a site folder's 'test' split even when it was its training split."""
    from medzoo.relay.simulate import simulate

    build, cls = type(toy).build_dataset, type(toy)

    def no_split_file_at_a(self, source, split, *, augment=False):  # type: ignore[no-untyped-def]
        return build(self, "a", "train" if split == "test" else split, augment=augment) if str(source).endswith("site-a") \
            else build(self, source, split, augment=augment)

    monkeypatch.setattr(cls, "build_dataset", no_split_file_at_a)
    folder = tmp_path / "site-a"
    folder.mkdir()
    with pytest.raises(InputError, match="24 of the 24 samples of this site's 'test' split are also in its 'train' "
                                         "split.*images they trained on"):
        simulate(toy.spec.name, [str(folder), "b"], tmp_path / "run", strategies=["naive"], baselines="none")
    assert not (tmp_path / "run").exists()


def test_evaluation_lap_prints_counts_as_whole_numbers(toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`relay evaluate` printed a count (mediastinum's auroc_classes) as "5.0000"; `medzoo evaluate` prints "5"."""
    from medzoo.cli.main import main
    from medzoo.core import EvalResult

    evaluate = type(toy).evaluate

    def with_a_count(self, model, dataset, *, device="cpu"):  # type: ignore[no-untyped-def]
        r = evaluate(self, model, dataset, device=device)
        return EvalResult({**r.metrics, "auroc_classes": 2.0}, r.per_sample, r.ids)

    monkeypatch.setattr(type(toy), "evaluate", with_a_count)
    b0 = _start(toy, tmp_path)
    assert main(["relay", "evaluate", str(b0), "--data", "b", "--site", "b"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  auroc_classes +2$", out, re.M) and re.search(r"^  accuracy +0\.\d{4}$", out, re.M)
