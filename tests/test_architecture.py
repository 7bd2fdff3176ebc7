"""The package's shape: imports point downward, public names are declared, import is light."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mloop"

# docs/architecture.md draws these layers; a package may import only from lower ranks.
RANKS = {
    "core": 0,
    "storage": 1,
    "security": 2,
    "data": 3,
    "tracking": 3,
    "models": 3,
    "registry": 4,
    "features": 4,  # feature views over datasets
    "training": 5,
    "lineage": 5,  # resolves references through data, tracking and registry
    "serving": 6,
    "monitoring": 6,
    "loop": 7,  # the controller drives training, registry, serving and monitoring
    "workspace": 8,
    "fluent": 9,  # the fluent tracking API opens workspaces or remote stores
    "client": 10,  # MloopClient defaults to the fluent API's store
    "autologging": 10,  # autologging logs through the fluent API
    "api": 9,
    "demo": 9,
    "cli": 10,  # the command line hosts the API server and the demo
}
DOMAIN_PACKAGES = [name for name in RANKS if (SRC / name / "__init__.py").exists()]


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name) for line, name in found if name.split(".")[0] == "mloop"]


def test_imports_point_downward() -> None:
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        own = _package_of(path)
        if own not in RANKS:
            continue
        for line, module in _imports(path):
            parts = module.split(".")
            if len(parts) < 2:
                continue  # `import mloop` / `from mloop import __version__`
            target = parts[1]
            if target == own or target not in RANKS:
                continue
            if RANKS[target] >= RANKS[own]:
                violations.append(f"{path.relative_to(SRC)}:{line} {own} imports {module}")
    assert not violations, "imports that point sideways or up:\n" + "\n".join(violations)


def test_other_packages_import_domain_packages_through_their_init() -> None:
    """`from mloop.data import X`, never `from mloop.data.validation import X`, across packages."""
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        own = _package_of(path)
        for line, module in _imports(path):
            parts = module.split(".")
            if len(parts) >= 3 and parts[1] != own and parts[1] in RANKS:
                allowed = parts[1] in ("core",) or (parts[1], parts[2]) in PRIVATE_OK
                if not allowed:
                    violations.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not violations, "reach into another package's modules:\n" + "\n".join(violations)


# core's modules are its public surface; these few deep imports are deliberate.
PRIVATE_OK = {
    ("data", "readers"),  # api.routers.datasets parses request bodies with the same reader
}


@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_public_names_are_declared(package: str) -> None:
    module = importlib.import_module(f"mloop.{package}")
    exported = getattr(module, "__all__", None)
    assert exported, f"mloop.{package} declares no __all__"
    assert sorted(set(exported)) == sorted(exported), f"mloop.{package}.__all__ repeats names"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"mloop.{package}.__all__ names what it lacks: {missing}"


def test_top_level_names() -> None:
    import mloop

    for name in mloop.__all__:
        assert getattr(mloop, name) is not None
    assert mloop.Workspace.__name__ == "Workspace"


def test_import_mloop_stays_light() -> None:
    """`import mloop` must not drag in scikit-learn, FastAPI, Polars or SQLAlchemy."""
    code = (
        "import sys, mloop\n"
        "heavy = [m for m in ('sklearn', 'fastapi', 'polars', 'sqlalchemy', 'pandas', 'scipy')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_cli_help_stays_light() -> None:
    """`mloop --help` must not pay for scikit-learn, pandas or FastAPI."""
    code = (
        "import sys, mloop.cli\n"
        "heavy = [m for m in ('sklearn', 'fastapi', 'pandas', 'scipy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_cli_default_estimator_is_the_trainer_s() -> None:
    from mloop.cli.train import DEFAULT_ESTIMATOR as CLI_DEFAULT
    from mloop.training import DEFAULT_ESTIMATOR

    assert CLI_DEFAULT == DEFAULT_ESTIMATOR


def test_the_server_idles_without_the_heavy_libraries() -> None:
    """A server that only tracks never loads NumPy, pandas, Polars, Arrow or scikit-learn:
    they are imported on first use (mloop.core.lazy)."""
    code = (
        "import sys, tempfile, mloop\n"
        "from mloop.api import create_app\n"
        "ws = mloop.Workspace.open(tempfile.mkdtemp())\n"
        "create_app(ws)\n"
        "ws.tracking.start_run('e')\n"
        "heavy = [m for m in ('numpy', 'pandas', 'polars', 'pyarrow', 'sklearn', 'scipy')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
