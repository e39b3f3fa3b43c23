"""The house rules, checked like behaviour: lint and complexity (ruff), types (mypy), import layers, and
the console's promises (every command takes --json)."""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[set[str]] = [
    {"core"},
    {"models", "encoder", "signing"},
    {"circuits"},
    {"prover", "verifier", "lineage", "watermark"},
    {"registry"},
    {"noseprint"},
]
"""Ground first, as drawn in docs/design.md's Layout section: a package imports only packages of lower rows. Each
is installed as `noseprint.<folder>` (the console script's own modules are `noseprint.*` in noseprint/)."""
NOT_INSTALLED = {"training", "bench", "tests", "testkit"}
INSTALLED_NAME = "noseprint"


def tier(package: str) -> int:
    return next(i for i, row in enumerate(LAYERS) if package in row)


def project_package(module: str) -> str | None:
    """The folder an absolute import names: `noseprint.core.x` is core/, `noseprint.cli` is noseprint/; a bare
    `core.x` names core/ too (and is reported: it would load a second copy of the module)."""
    parts = module.split(".")
    if parts[0] == INSTALLED_NAME:
        return parts[1] if len(parts) > 1 and parts[1] in set().union(*LAYERS) else INSTALLED_NAME
    return parts[0] if parts[0] in set().union(*LAYERS) | NOT_INSTALLED else None


def imported_modules(path: Path) -> list[str]:
    """Absolute imports of a file (the project uses no relative ones)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def imported_packages(path: Path) -> set[str]:
    return {package for module in imported_modules(path) if (package := project_package(module)) is not None}


def layer_violations() -> list[str]:
    problems = []
    for package in sorted(set().union(*LAYERS)):
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in sorted(imported_packages(path) - {package}):
                if target in NOT_INSTALLED:
                    problems.append(f"{path.relative_to(ROOT)} imports {target}, which is not installed")
                elif tier(target) >= tier(package):
                    problems.append(f"{path.relative_to(ROOT)} imports {target}: not below {package}")
    return problems


def bare_imports(root: Path) -> list[str]:
    """Imports of an installed package by its folder name (`from core.x import`), anywhere in the repository:
    only `noseprint.core.x` is installed, and both spellings would load two copies of one module."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if {".venv", ".git"} & set(path.relative_to(root).parts):
            continue
        for module in imported_modules(path):
            if module.split(".")[0] in set().union(*LAYERS) - {INSTALLED_NAME}:
                found.append(f"{path.relative_to(root)}: {module}")
    return found


def test_imports_point_down_the_layers():
    assert layer_violations() == []


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: an import from a higher row is reported."""
    fake = tmp_path / "core"
    fake.mkdir()
    (fake / "bad.py").write_text("from noseprint.prover.plan import plan_proof\nimport training.dogs\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert layer_violations() == [
        "core/bad.py imports prover: not below core",
        "core/bad.py imports training, which is not installed",
    ]


def test_every_import_names_the_one_installed_package(tmp_path):
    assert bare_imports(ROOT) == []
    (tmp_path / "bad.py").write_text("from core.errors import UsageError\nimport noseprint.core.errors\n")
    assert bare_imports(tmp_path) == ["bad.py: core.errors"]


def test_the_distribution_installs_one_top_level_name(tmp_path):
    """Built as a wheel from pyproject.toml (no network: the venv's setuptools), its top-level names are exactly
    `noseprint` (and its metadata): no `core` or `models` beside other projects' packages."""
    import shutil
    import zipfile

    leftovers = [ROOT / "build", ROOT / "noseprint.egg-info"]
    existed = [path.exists() for path in leftovers]
    try:
        result = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                     str(tmp_path), ".")  # fmt: skip
    finally:
        for path, was_there in zip(leftovers, existed, strict=True):
            if not was_there:
                shutil.rmtree(path, ignore_errors=True)  # setuptools builds in the tree: leave it as it was
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("noseprint-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"noseprint"}
    for folder in ("prover", "verifier", "circuits", "encoder"):  # the design card's folders, installed inside
        assert any(name.startswith(f"noseprint/{folder}/") for name in names), folder
    assert "noseprint/encoder/weights/encoder.safetensors" in names and "noseprint/core/manifest.schema.json" in names


BUILTIN_EXCEPTIONS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
}


def stray_exceptions(root: Path = ROOT) -> list[str]:
    """Exception classes of the installed packages built on Python's own instead of on `NoseprintError`
    (core/errors.py, the one root: the console turns it into a message and an exit code)."""
    strays = []
    for package in sorted(set().union(*LAYERS)):
        for path in sorted((root / package).rglob("*.py")):
            if path.relative_to(root) == Path("core/errors.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                bases = [base.id for base in getattr(node, "bases", []) if isinstance(base, ast.Name)]
                if isinstance(node, ast.ClassDef) and BUILTIN_EXCEPTIONS & set(bases):
                    strays.append(f"{path.relative_to(root)}: {node.name}({', '.join(bases)})")
    return strays


def test_every_exception_derives_from_the_one_root():
    assert stray_exceptions() == []


def test_the_root_check_sees_a_stray_exception(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "bad.py").write_text("class Broken(ValueError):\n    pass\n")
    assert stray_exceptions(tmp_path) == ["core/bad.py: Broken(ValueError)"]


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_lint_and_complexity():
    result = run(sys.executable, "-m", "ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_on_the_installed_packages(tmp_path):
    """mypy reads import paths, not setuptools' folder mapping: it checks a view of the package as installed
    (`noseprint/` holding a link to each mapped folder), with the repository's own settings."""
    view = tmp_path / INSTALLED_NAME
    view.mkdir()
    for path in (ROOT / INSTALLED_NAME).glob("*.py"):
        (view / path.name).symlink_to(path)
    for package in set().union(*LAYERS) - {INSTALLED_NAME}:
        (view / package).symlink_to(ROOT / package, target_is_directory=True)
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", INSTALLED_NAME]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and "Success" in result.stdout, result.stdout + result.stderr


def _commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def cli_commands() -> dict[str, Any]:
    """Every leaf command of the console script, by its full name ("registry add")."""
    import typer

    from noseprint.cli import app

    return dict(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("name", sorted(cli_commands()))
def test_every_command_takes_json(name):
    options = {opt for param in cli_commands()[name].params for opt in getattr(param, "opts", [])}
    assert "--json" in options, f"noseprint {name} has no --json"


def test_verifying_needs_no_registry_stack():
    """An auditor's install (`pip install -e .`, no extra) must verify, prove and compare: none of these may
    import the database or web stack."""
    code = (
        "import sys; import noseprint.cli, noseprint.verifier.checks, noseprint.verifier.opening, "
        "noseprint.prover.pipeline, noseprint.lineage.compare; "
        "print(sorted(m for m in ('sqlalchemy', 'fastapi', 'uvicorn', 'psycopg', 'httpx') if m in sys.modules))"
    )
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_registry_commands_name_the_missing_extra(monkeypatch):
    from typer.testing import CliRunner

    import noseprint.registry_cli as registry_cli
    from noseprint.cli import app

    monkeypatch.setattr(registry_cli, "find_spec", lambda name: None if name == "sqlalchemy" else object())
    result = CliRunner().invoke(app, ["registry", "list"])
    assert result.exit_code == 2
    assert "noseprint[registry]" in result.output and "sqlalchemy" in result.output


def test_error_messages_are_printed_as_text_not_markup(monkeypatch):
    """Messages carry strangers' text (a token string, a JSON error): brackets must reach the user unchanged."""
    from typer.testing import CliRunner

    from noseprint.cli import app

    result = CliRunner().invoke(app, ["compare", "/nonexistent/[bold]x[/bold]", "/nonexistent/y"])
    assert result.exit_code == 2 and "[bold]x[/bold]" in result.output.replace("\n", "")
