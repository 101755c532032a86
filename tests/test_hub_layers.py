"""The hub's import directions: the web layer sits on top; the composition root reads the ledger only through the Store."""

from __future__ import annotations

import ast
import re
from pathlib import Path

HUB = Path(__file__).resolve().parent.parent / "hub"
ENTRY_POINTS = {HUB / "cli.py"}  # starts the web app: above everything, by design


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_nothing_below_the_web_layer_imports_it() -> None:
    below = [p for p in HUB.rglob("*.py") if HUB / "web" not in p.parents and p not in ENTRY_POINTS]
    assert HUB / "service.py" in below and HUB / "live.py" in below
    offenders = {str(p.relative_to(HUB)): sorted(m for m in _imports(p) if m == "hub.web" or m.startswith("hub.web."))
                 for p in below}
    assert {p: mods for p, mods in offenders.items() if mods} == {}


def test_the_composition_root_reads_the_ledger_through_the_store() -> None:
    assert "sqlite3" not in _imports(HUB / "service.py")


def test_only_the_backend_modules_import_a_database_driver() -> None:
    drivers = {"sqlite3": HUB / "db" / "sqlite.py", "psycopg": HUB / "db" / "postgresql.py"}
    importers = {driver: sorted(str(p.relative_to(HUB)) for p in HUB.rglob("*.py")
                                if any(m == driver or m.startswith(driver + ".") for m in _imports(p)))
                 for driver in drivers}
    assert importers == {driver: [str(path.relative_to(HUB))] for driver, path in drivers.items()}


# "DESIGN" followed by a section sign: how the old docstrings cited the brief.
BRIEF_CITATION = re.compile("DESIGN \N{SECTION SIGN}")


def test_code_points_at_the_projects_own_design_document() -> None:
    """Comments cite docs/architecture.md, never a design brief that is not in the repository."""
    root = Path(__file__).resolve().parent.parent
    citing = [str(p.relative_to(root)) for package in ("contract", "settings", "service", "mqtt_client", "edge", "hub")
              for p in (root / package).rglob("*.py") if BRIEF_CITATION.search(p.read_text())]
    assert citing == []


def _private_names_imported(path: Path) -> list[str]:
    """`module.name` for each underscore-prefixed name `path` imports from another module."""
    return [f"{node.module}.{alias.name} (line {node.lineno})"
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__"
            for alias in node.names if alias.name.startswith("_")]


def test_no_hub_module_imports_another_modules_private_names() -> None:
    """A helper two modules share is public in a module of its own (e.g. hub/web/request_args.py)."""
    offenders = {str(p.relative_to(HUB)): found for p in sorted(HUB.rglob("*.py"))
                 if (found := _private_names_imported(p))}
    assert offenders == {}


ROOT = HUB.parent
PACKAGES = ("contract", "settings", "service", "mqtt_client", "edge", "hub")


def _is_private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def test_no_module_imports_another_packages_private_modules() -> None:
    """A package's `_modules` are its own (contract/_fields.py): the others use the names it makes public."""
    offenders = {str(p.relative_to(ROOT)): found for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
                 if (found := sorted(m for m in _imports(p) if m.split(".")[0] != package and _is_private(m)))}
    assert offenders == {}
