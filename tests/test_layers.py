"""The package's layers import only downward (each subpackage's docstring says its budget).

Every import in every module counts, deferred ones inside functions included: a deferred
``import mlflow`` in a core module would still put MLflow on the forecasting core's path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "include" / "forecastflow"

FOUNDATION = {"forecastflow.errors", "forecastflow.storage", "forecastflow.connections",
              "forecastflow.cpu"}
CORE = {"forecastflow.data", "forecastflow.models", "forecastflow.evaluation"}
# What each layer may import from the package (besides itself and the foundation).
ALLOWED = {
    "forecastflow.connections": {"forecastflow.errors"},
    "forecastflow.data": {"forecastflow.models"},  # problem.py checks family names, lazily
    "forecastflow.models": {"forecastflow.data"},
    "forecastflow.evaluation": {"forecastflow.data", "forecastflow.models"},
    "forecastflow.lifecycle": CORE,
    "forecastflow.orchestration": CORE | {"forecastflow.lifecycle"},
    "forecastflow.serving": CORE | {"forecastflow.lifecycle"},
}
FORBIDDEN_LIBRARIES = {
    "forecastflow.errors": {"mlflow", "airflow", "fastapi", "uvicorn", "starlette"},
    "forecastflow.storage": {"mlflow", "airflow", "fastapi", "uvicorn", "starlette"},
    "forecastflow.connections": {"mlflow", "airflow", "fastapi", "uvicorn", "starlette"},
    "forecastflow.cpu": {"mlflow", "airflow", "fastapi", "uvicorn", "starlette", "pandas",
                         "numpy"},
    **{layer: {"mlflow", "airflow", "fastapi", "uvicorn", "starlette"} for layer in CORE},
    "forecastflow.lifecycle": {"airflow", "fastapi", "uvicorn", "starlette"},
    "forecastflow.orchestration": {"fastapi", "uvicorn", "starlette"},
    "forecastflow.serving": {"airflow"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` (or ``source``, its text) imports, at any depth of the file."""
    found = set()
    text = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            if node.module == "forecastflow":  # from forecastflow import storage, errors
                found |= {f"forecastflow.{alias.name}" for alias in node.names}
    return found


def layer_of(module: str) -> str | None:
    for layer in {*FOUNDATION, *ALLOWED}:
        if module == layer or module.startswith(layer + "."):
            return layer
    return None  # the top: cli, workflow


def violations(path: Path, source: str | None = None) -> list[str]:
    own = module_name(path)
    layer = layer_of(own)
    if layer is None:
        return []
    allowed = {layer} | ALLOWED.get(layer, set()) | (set() if layer in FOUNDATION
                                                       else FOUNDATION)
    bad = []
    for name in sorted(imports(path, source)):
        if name.split(".")[0] in FORBIDDEN_LIBRARIES.get(layer, set()):
            bad.append(f"{own} imports {name} (not allowed in {layer})")
        elif name.startswith("forecastflow") and name != "forecastflow" and (
                layer_of(name) not in allowed):
            bad.append(f"{own} imports {name} (above {layer})")
    return bad


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_layers_import_only_downward(path):
    assert violations(path) == []


@pytest.mark.parametrize(("module", "added"), [
    ("data/series.py", "import mlflow"),
    ("models/base.py", "from airflow.sdk import task"),
    ("evaluation/search.py", "from forecastflow.lifecycle import registry"),
    ("lifecycle/registry.py", "from forecastflow.orchestration import context"),
    ("serving/app.py", "from forecastflow.orchestration import spec"),
    ("serving/hub.py", "import airflow"),
    ("serving/schemas.py", "from forecastflow.orchestration import context"),
])
def test_the_check_catches_an_upward_import(module, added):
    """Adding ``import mlflow`` (even deferred, inside a function) to a core module fails."""
    path = PACKAGE / module
    if not path.exists():
        path = PACKAGE / "serving" / "app.py"
    source = path.read_text() + f"\n\ndef _later():\n    {added}\n"
    assert violations(path) == []
    assert len(violations(path, source)) == 1


def test_dag_files_and_plugin_import_only_orchestration():
    for path in [*(ROOT / "dags").glob("*.py"), *(ROOT / "plugins").glob("*.py")]:
        ours = {name for name in imports(path) if name.startswith("forecastflow")}
        assert ours, path
        assert all(name.startswith("forecastflow.orchestration") for name in ours), (
            path.name, sorted(ours))


def test_every_module_is_in_a_layer_or_at_the_top():
    top = {module_name(p) for p in MODULES if layer_of(module_name(p)) is None}
    assert top == {"forecastflow", "forecastflow.cli", "forecastflow.workflow"}
