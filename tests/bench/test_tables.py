"""bench/tables.py: the documentation's measured tables are what the committed JSON says, and an edit shows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

from bench import tables


def run_tables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "tables.py"), *args], capture_output=True,
                          text=True, timeout=60, check=False)


def copy_docs(target: Path) -> Path:
    """README.md, docs/ (pages and results) and the models' metadata: what the tables are made from and into."""
    shutil.copy(REPO_ROOT / "README.md", target / "README.md")
    shutil.copytree(REPO_ROOT / "docs", target / "docs", ignore=shutil.ignore_patterns("*.png"))
    (target / "models").mkdir()
    for metadata in (REPO_ROOT / "models").glob("*.json"):
        shutil.copy(metadata, target / "models" / metadata.name)
    return target


def test_the_committed_tables_are_what_their_json_says() -> None:
    done = run_tables("--check")
    assert done.returncode == 0, done.stderr


def test_every_table_stands_somewhere_and_every_marker_names_one() -> None:
    used = {name for page in tables.pages(REPO_ROOT) for name in tables.OPENING.findall(page.read_text())}
    assert used == set(tables.TABLES)


def test_every_committed_result_feeds_a_table() -> None:
    sources = {path for table in tables.TABLES.values()
               for path in (table.source.values() if isinstance(table.source, dict) else [table.source])}
    results = {path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "docs" / "results").glob("*.json")}
    assert results <= sources


def test_an_edited_figure_is_named_and_rewritten(tmp_path: Path) -> None:
    root = copy_docs(tmp_path)
    page = root / "docs" / "benchmarks.md"
    original = page.read_text()
    block = tables.BLOCK.search(original, original.index("<!-- table: mqtt -->"))
    assert block is not None and block.group("name") == "mqtt"
    row = block.group("body").splitlines()[2]  # the first row under the header and its rule
    edited_row = re.sub(r"\d", lambda digit: str((int(digit.group()) + 1) % 10), row, count=1)
    page.write_text(original.replace(row, edited_row, 1))

    done = run_tables("--check", "--root", str(root))
    assert done.returncode == 1
    assert "docs/benchmarks.md: table 'mqtt' differs from its JSON" in done.stderr
    assert "README.md" not in done.stderr  # the same table in the README is untouched
    assert page.read_text() != original  # --check changes nothing

    done = run_tables("--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "docs/benchmarks.md: rewrote mqtt" in done.stdout
    assert page.read_text() == original
    assert run_tables("--check", "--root", str(root)).returncode == 0


def test_a_changed_result_is_named(tmp_path: Path) -> None:
    root = copy_docs(tmp_path)
    result = root / "docs" / "results" / "bench_mqtt.json"
    result.write_text(result.read_text().replace('"mqtt_clips_per_s": ', '"mqtt_clips_per_s": 1', 1))
    done = run_tables("--check", "--root", str(root))
    assert done.returncode == 1
    assert "table 'mqtt' differs" in done.stderr


def test_markers_it_cannot_fill_are_errors(tmp_path: Path) -> None:
    root = copy_docs(tmp_path)
    page = root / "docs" / "extra.md"
    page.write_text("<!-- table: no_such_table -->\n<!-- /table -->\n")
    done = run_tables("--root", str(root))
    assert done.returncode == 1 and "no table is named 'no_such_table'" in done.stderr

    page.write_text("<!-- table: mqtt -->\nunclosed\n")
    done = run_tables("--check", "--root", str(root))
    assert done.returncode == 1 and "has no <!-- /table -->" in done.stderr

    page.unlink()
    (root / "docs" / "results" / "bench_mqtt.json").unlink()
    done = run_tables("--check", "--root", str(root))
    assert done.returncode == 1 and "cannot read docs/results/bench_mqtt.json" in done.stderr
