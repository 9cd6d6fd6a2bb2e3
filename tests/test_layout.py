"""The layout rules that keep one obvious place for each thing, and the style the code is written in."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_app"
#: modules that parse a command line and call a library; they alone sit at the top with config and compat
COMMAND_LINES = {"train", "denoise", "evaluate", "sweep", "submit", "bench", "corpus", "export"}
#: the libraries, grouped by concern (shared/DESIGN.md)
WINGS = {"data", "nets", "systems", "training", "restoring", "evaluation", "metrics"}


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_no_library_module_imports_a_command_line_module():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        if name in COMMAND_LINES:
            continue
        for imported in _imported_modules(path):
            if imported.startswith("lightning_app.") and imported.split(".")[1] in COMMAND_LINES:
                offenders.append(f"{name} imports {imported}")
    assert not offenders, offenders


def test_the_top_level_holds_only_command_lines_config_and_compat():
    # commands: the installed c2c-* entry points, which run the command lines
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "commands"}
    assert modules - COMMAND_LINES <= {"config", "compat"}, (
        f"libraries at the top: {modules - COMMAND_LINES - {'config', 'compat'}}"
    )
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == WINGS, f"wings {sorted(packages)}, expected {sorted(WINGS)}"


def test_tests_mirror_the_package():
    tests = PACKAGE.parent / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders <= WINGS, f"test folders that are not wings of the package: {sorted(folders - WINGS)}"
    wing_modules = {module.stem for wing in WINGS for module in (PACKAGE / wing).glob("*.py")}
    stray = [p.name for p in tests.glob("test_*.py") if p.stem.removeprefix("test_") in wing_modules]
    assert not stray, f"tests of a wing's module belong in its folder: {stray}"


def test_tests_share_code_only_through_the_helpers_module():
    tests = PACKAGE.parent / "tests"
    offenders = [
        f"{path.relative_to(tests)} imports {name}"
        for path in sorted(tests.rglob("*.py"))
        for name in _imported_modules(path)
        if name.startswith("tests.") and name.split(".")[1] not in ("helpers", "conftest")
    ]
    assert not offenders, offenders


def test_command_lines_stay_thin():
    """A command line parses, calls a library and summarises: no class, and no function but the parser
    (as long as its options) over 100 lines."""
    long = []
    for name in sorted(COMMAND_LINES):
        for node in ast.parse((PACKAGE / f"{name}.py").read_text()).body:
            if isinstance(node, ast.ClassDef):
                long.append(f"{name}.{node.name}: a class")
            elif isinstance(node, ast.FunctionDef) and node.name != "parse_args":
                if (lines := node.end_lineno - node.lineno + 1) > 100:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, long


def test_markdown_tables_are_drawn_in_one_place():
    drawers = [p.name for p in PACKAGE.rglob("*.py") if '"|---"' in p.read_text() and p.name != "tables.py"]
    assert not drawers, f"tables drawn by hand in {drawers}: use lightning_app.evaluation.tables"


@pytest.mark.slow
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_the_code_passes_ruff(command):
    """What make lint runs: ruff's rules and format at the line length in pyproject.toml."""
    paths = ["lightning_app", "tests", "scripts", "setup.py"]
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *paths], cwd=PACKAGE.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
