"""The tests' own layout: helpers and fixtures live in support.py and conftest.py, never in a test file.

A test file that imports another test file runs that file's module-level set-up twice and hides
where a helper lives; a helper in a file named test_* is collected as tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS_DIR = Path(__file__).parent


def is_test_module(name: str) -> bool:
    """tests.test_x, or test_x imported bare or relatively from inside tests/."""
    parts = name.split(".")
    return parts[-1].startswith("test_") and (len(parts) == 1 or parts[:-1] == ["tests"])


def imported_test_modules(path: Path) -> list[str]:
    """The test modules a file imports, each with its line number."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [module] + [f"{module}.{alias.name}".lstrip(".") for alias in node.names]
        found += [f"{name} (line {node.lineno})" for name in names if is_test_module(name)]
    return found


def test_no_test_file_imports_another_test_file() -> None:
    offenders = {p.name: imported_test_modules(p) for p in sorted(TESTS_DIR.glob("*.py"))}
    offenders = {name: found for name, found in offenders.items() if found}
    assert not offenders, f"import helpers from tests/support.py or fixtures from conftest.py instead: {offenders}"


def test_the_checker_sees_both_import_forms(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text("from tests.test_ledger import x\nimport tests.test_chaos\nfrom tests.support import y\n"
                      "from . import test_delivery\nfrom .test_scans import z\n")
    assert imported_test_modules(sample) == ["tests.test_ledger (line 1)", "tests.test_chaos (line 2)",
                                             "test_delivery (line 4)", "test_scans (line 5)"]
