"""The layout rules that keep one obvious place for each thing."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_app"
#: modules that parse a command line and call a library (train.py is also the training library: DESIGN.md)
COMMAND_LINES = {"denoise", "evaluate", "sweep", "submit", "bench", "corpus"}


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


def test_markdown_tables_are_drawn_in_one_place():
    drawers = [p.name for p in PACKAGE.rglob("*.py") if '"|---"' in p.read_text() and p.name != "tables.py"]
    assert not drawers, f"tables drawn by hand in {drawers}: use lightning_app.tables"
