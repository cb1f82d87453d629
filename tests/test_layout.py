"""The tree is the architecture: what a user runs at the top, the rest in the package, no cycles.

These are the rules a newcomer relies on when changing a file without fear; they are
checked on the source, with ``ast``, not by convention.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_script

ENTRY_SCRIPTS = (
    "little_client.py", "big_service.py", "cooperative_client.py", "inference_client.py", "preprocessing.py",
    "train.py", "evaluate.py", "dataset.py", "demo.py", "calibrate.py",
)
SCRIPT_MODULES = {Path(name).stem for name in ENTRY_SCRIPTS}
PACKAGE = REPO_ROOT / "kws"


def python_files(root: Path) -> list[Path]:
    """The project's own Python files under ``root`` (no virtual environments, no caches)."""
    return sorted(path for path in root.rglob("*.py")
                  if not any(part.startswith(".venv") or part == "__pycache__" for part in path.parts))


def edits_sys_path(path: Path) -> bool:
    """Whether the file calls ``sys.path.insert``/``append``/``extend`` (the check itself names them in strings)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("insert", "append", "extend")
                and ast.unparse(node.func.value) == "sys.path"):
            return True
    return False


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_top_level_holds_only_what_a_user_runs() -> None:
    assert sorted(path.name for path in REPO_ROOT.glob("*.py")) == sorted(ENTRY_SCRIPTS)


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_every_entry_script_answers_help(script: str) -> None:
    done = run_script(script, "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and "Traceback" not in done.stderr


def test_no_file_edits_sys_path() -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in python_files(REPO_ROOT)
        if edits_sys_path(path)
    ]
    assert offenders == []


def test_the_package_never_imports_an_entry_script() -> None:
    upward = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_modules(path) & SCRIPT_MODULES)
        for path in python_files(PACKAGE)
    }
    assert {path: names for path, names in upward.items() if names} == {}


def test_tests_and_benchmarks_import_the_package_not_entry_scripts() -> None:
    users = python_files(REPO_ROOT / "tests") + python_files(REPO_ROOT / "bench")
    upward = {str(path.relative_to(REPO_ROOT)): sorted(imported_modules(path) & SCRIPT_MODULES) for path in users}
    assert {path: names for path, names in upward.items() if names} == {}


def test_the_package_has_no_import_cycles() -> None:
    modules = {module_name(path): path for path in python_files(PACKAGE)}
    graph = {name: {dep for dep in imported_modules(path) if dep in modules and dep != name}
             for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", "import cycle: " + " -> ".join([*trail, name])
        state[name] = "open"
        for dep in sorted(graph[name]):
            visit(dep, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_tensorflow_is_imported_under_kws_training_only() -> None:
    outside = [
        str(path.relative_to(REPO_ROOT))
        for path in python_files(PACKAGE)
        if "training" not in path.relative_to(PACKAGE).parts
        and any(name.split(".")[0] in ("tensorflow", "tf_keras") for name in imported_modules(path))
    ]
    assert outside == []


def test_onnxruntime_is_imported_by_the_front_ends_server_side_only() -> None:
    """The Pi computes the pretrained front end's mel in numpy (kws.frontend.mel); only the server runs the graphs."""
    importers = [
        str(path.relative_to(REPO_ROOT))
        for path in python_files(PACKAGE) + [REPO_ROOT / name for name in ENTRY_SCRIPTS]
        if any(name.split(".")[0] == "onnxruntime" for name in imported_modules(path))
    ]
    assert importers == ["kws/frontend/embedding.py"]
