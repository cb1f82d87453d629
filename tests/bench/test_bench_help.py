"""Every benchmark's --help reads (a % in a help text once made argparse crash on it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

BENCHES = sorted(path.stem for path in (REPO_ROOT / "bench").glob("*.py") if "def main(" in path.read_text())


@pytest.mark.parametrize("bench", BENCHES)
def test_help_reads(bench: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"bench.{bench}", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:") and "Traceback" not in done.stderr


def test_the_benches_are_found() -> None:
    assert {"bench_robustness", "bench_rest", "bench_stream"} <= set(BENCHES) and Path(REPO_ROOT / "bench").is_dir()
