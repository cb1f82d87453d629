"""The tree is the architecture: what a user runs at the top, the rest in the package, no cycles; what
ships (the runtime) apart from what tunes and proves it (kws.tuning, kws.training, kws.evaluation).

These are the rules a newcomer relies on when changing a file without fear; they are
checked on the source, with ``ast``, and on what the programs really load, not by convention.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_script

ENTRY_SCRIPTS = (
    "little_client.py", "big_service.py", "cooperative_client.py", "inference_client.py", "preprocessing.py",
    "train.py", "evaluate.py", "dataset.py", "demo.py", "calibrate.py",
)
SCRIPT_MODULES = {Path(name).stem for name in ENTRY_SCRIPTS}
PACKAGE = REPO_ROOT / "kws"
#: The programs a Pi or a server runs, and the package modules that are their ``main``.
RUNTIME_SCRIPTS = {
    "little_client.py": "kws.cli.little", "big_service.py": "kws.cli.big",
    "inference_client.py": "kws.cli.infer", "cooperative_client.py": "kws.cli.coop",
}
#: What tunes and proves the runtime: packages the runtime never imports.
OFFLINE_PACKAGES = ("kws.tuning", "kws.training", "kws.evaluation")
#: Programs of the offline side that live with the others in kws.cli.
OFFLINE_PROGRAMS = ("kws.cli.calibrate",)
#: What a runtime program must not load: the offline side, the benchmarks and tests, and the heavy
#: libraries of training and evaluation. The Big service loads onnxruntime only once it serves a
#: head on the pretrained front end (kws.frontend.embedding, imported when such a model loads).
NOT_LOADED_BY_THE_RUNTIME = (
    *OFFLINE_PACKAGES, "bench", "tests", "conftest", "tensorflow", "tf_keras", "sklearn", "matplotlib", "onnxruntime",
)
#: Exceptions that are not errors but ways to stop a loop; everything else derives from kws.errors.KwsError.
CONTROL_FLOW_EXCEPTIONS = {"kws.listen.listener.StopListening"}


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


def package_graph() -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports."""
    modules = {module_name(path): path for path in python_files(PACKAGE)}
    return {name: {dep for dep in imported_modules(path) if dep in modules and dep != name}
            for name, path in modules.items()}


def assert_acyclic(graph: dict[str, set[str]]) -> None:
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


def test_the_package_has_no_import_cycles() -> None:
    assert_acyclic(package_graph())


def subpackage(name: str) -> str:
    """``kws.cascade.run`` -> ``kws.cascade``; ``kws.audio`` -> ``kws.audio``."""
    return ".".join(name.split(".")[:2])


def test_the_subpackages_depend_on_each_other_without_cycles() -> None:
    """Read bottom up, each sub-package stands on those below it only (kws.cli and kws.tuning on top)."""
    graph: dict[str, set[str]] = {}
    for name, deps in package_graph().items():
        graph.setdefault(subpackage(name), set()).update(
            subpackage(dep) for dep in deps if subpackage(dep) != subpackage(name)
        )
    assert_acyclic(graph)


def is_offline(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in (*OFFLINE_PACKAGES, *OFFLINE_PROGRAMS))


def test_the_runtime_never_imports_the_offline_side() -> None:
    """No module outside kws.tuning, kws.training, kws.evaluation and the offline programs imports them,
    even inside a function."""
    graph = package_graph()
    upward = {name: sorted(dep for dep in deps if is_offline(dep))
              for name, deps in graph.items() if not is_offline(name)}
    assert {name: deps for name, deps in upward.items() if deps} == {}


def test_what_a_runtime_program_imports_is_runtime_only() -> None:
    """The four programs' modules and everything they import, transitively, on the source."""
    graph = package_graph()
    reached, todo = set(), list(RUNTIME_SCRIPTS.values())
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph[name])
    assert sorted(name for name in reached if is_offline(name)) == []


#: Imports one entry script as a module, without running its main (that only runs as __main__),
#: and prints every module then loaded.
LOAD_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("entry_script", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("script", sorted(RUNTIME_SCRIPTS))
def test_a_runtime_program_loads_nothing_of_the_offline_side(script: str) -> None:
    """What the program really loads, in a fresh interpreter: nothing that tunes or proves, no heavy library."""
    done = subprocess.run([sys.executable, "-c", LOAD_PROBE, str(REPO_ROOT / script)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert RUNTIME_SCRIPTS[script] in loaded, "the probe loaded the program's module"
    forbidden = sorted(
        name for name in loaded
        if any(name == root or name.startswith(root + ".") for root in NOT_LOADED_BY_THE_RUNTIME)
    )
    assert forbidden == []


def exception_classes() -> dict[str, list[str]]:
    """Every class in the package that derives, by name, from a builtin exception or another exception
    class of the package: its dotted name and its bases as written."""
    bases_of: dict[str, list[str]] = {}
    for path in python_files(PACKAGE):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef) and node.bases:
                bases_of[f"{module_name(path)}.{node.name}"] = [ast.unparse(base) for base in node.bases]
    short = {name.rsplit(".", 1)[1]: name for name in bases_of}
    builtin = {name for name, value in vars(builtins).items()
               if isinstance(value, type) and issubclass(value, BaseException)}

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(base in builtin or (base in short and short[base] not in seen
                                       and is_exception(short[base], seen | {name}))
                   for base in bases_of[name])

    return {name: bases for name, bases in bases_of.items() if is_exception(name)}


def test_every_error_of_the_package_is_a_kws_error() -> None:
    """One root (kws.errors.KwsError): a program or the service catches one class, never a list that grows."""
    import kws.errors

    found = exception_classes()
    assert len(found) > 20, "the scan finds the package's exception classes"
    not_rooted = []
    for name in sorted(set(found) - CONTROL_FLOW_EXCEPTIONS - {"kws.errors.KwsError"}):
        module_path, _, class_name = name.rpartition(".")
        if not issubclass(getattr(importlib.import_module(module_path), class_name), kws.errors.KwsError):
            not_rooted.append(name)
    assert not_rooted == []


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


def test_one_place_turns_a_models_output_into_probabilities() -> None:
    """KeywordModel.predict_features applies the softmax a logits graph needs; nothing else defines or imports one."""
    users = []
    for path in python_files(PACKAGE):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef) and node.name == "softmax":
                users.append(f"{module_name(path)} defines softmax")
            if isinstance(node, ast.ImportFrom) and any(alias.name == "softmax" for alias in node.names):
                users.append(f"{module_name(path)} imports softmax from {node.module}")
    assert users == ["kws.model.runtime defines softmax"]
