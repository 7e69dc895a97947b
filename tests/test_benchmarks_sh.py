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
    assert list(cmds) == ["fundus", "mediastinum", "midline", "relay"]
    assert "tasks/relay/benchmark.py" not in r.stdout
    bench = ROOT / "docs" / "benchmarks"
    for name, pub in (("fundus", "fundus"), ("relay", "relay_fundus")):
        doc = json.loads((bench / f"{pub}.json").read_text())
        assert cmds[name] == (doc.get("command") or doc["provenance"]["command"])
    assert _sh("-n", "relay").stdout.strip() == "== relay: python tasks/relay/benchmark_fundus.py --preset reduced"
