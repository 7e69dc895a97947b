"""tasks/benchmarks.sh: --help and unknown names give usage (unknown: exit 2, nothing run); the relay part runs
what the README's relay numbers come from (benchmark_fundus.py at the reduced preset), and each command is the
one recorded in the publication it reproduces."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tasks" / "benchmarks.sh"


def _sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    r = _sh(flag)
    assert r.returncode == 0 and r.stdout.startswith("usage:") and "==" not in r.stdout
    assert "benchmark_fundus.py --preset reduced" in r.stdout and "2 hours" in r.stdout


@pytest.mark.parametrize("args", [("nonsense",), ("fundus", "nonsense"), ("--bogus",)])
def test_unknown_name_is_an_error(args: tuple[str, ...]) -> None:
    r = _sh(*args)
    assert r.returncode == 2 and "usage:" in r.stderr and "==" not in r.stdout


def test_dry_run_commands_match_the_publications() -> None:
    r = _sh("--dry-run")
    assert r.returncode == 0, r.stderr
    cmds = dict(line[3:].split(": ", 1) for line in r.stdout.splitlines() if line.startswith("== "))
    assert list(cmds) == ["fundus", "mediastinum", "midline", "relay", "relay-running"]
    assert "tasks/relay/benchmark.py" not in r.stdout
    bench = ROOT / "docs" / "benchmarks"
    for name, pub in (("fundus", "fundus"), ("relay", "relay_fundus_image_lwf_both"), ("relay-running", "relay_fundus")):
        doc = json.loads((bench / f"{pub}.json").read_text())
        assert _settings(cmds[name]) == _settings(doc.get("command") or doc["provenance"]["command"]), name
    assert _sh("-n", "relay-running").stdout.strip() == "== relay-running: python tasks/relay/benchmark_fundus.py --preset reduced"


def _settings(cmd: str) -> list[str]:
    """A benchmark command without what does not change its numbers: where it writes (--out, --publish-dir) and
    the default seed (--seed 0)."""
    words, out, skip = cmd.split(), [], False
    for i, w in enumerate(words):
        if skip:
            skip = False
        elif w in ("--out", "--publish-dir") or (w == "--seed" and words[i + 1] == "0"):
            skip = True
        else:
            out.append(w)
    return out


def test_settings_ignore_only_where_a_run_writes() -> None:
    a = "python b.py --preset reduced --seed 0 --out runs/x --name n --publish-dir /tmp/p"
    assert _settings(a) == _settings("python b.py --preset reduced --name n")
    assert _settings("python b.py --seed 1") != _settings("python b.py")
    assert _settings("python b.py --name m") != _settings("python b.py --name n")
