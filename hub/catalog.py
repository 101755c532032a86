"""The catalog: SKUs, their GTINs, bins (ledger locations), which node serves each bin and
which bins a shelf weighs. Imported from CSV, indexed in memory for ingest, and pushed to
each node as its retained `config` (contract.NodeConfig).

CSV columns (header required; one row per SKU x GTIN x bin, blanks allowed):

    sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv,reorder_min,reorder_max,tracking

A row with only `sku` (and `name`) declares a SKU; a `gtin` adds a barcode for it; a `bin`
assigns the SKU to that bin; `reorder_min` and `reorder_max` (both, whole pieces, min below
max) are the SKU's manual reorder levels, which the rules use until they have learned its
demand (docs/rules.md); blank keeps what an earlier row of the file said. `tracking` is `lot`
(stock kept per lot, with its expiry), `serial` (per serial number: each unit in one place) or
empty (a plain SKU, as simple as ever; see hub.lots), said on any of the SKU's rows. `sensored` bins need `unit_weight_g`; `weight_only` bins are
counted by weight alone (docs/ledger.md says what that changes). Bad rows are reported with
their line number, column and problem; the good rows still import unless `strict`.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from contract import NAME_RE, BinConfig, NodeConfig
from contract.messages import GTIN_RE, LOCATION_RE, MAX_WEIGHT_G, SKU_RE
from hub.rules.reorder import check_manual_levels
from hub.store.base import TRACKING_NONE, TRACKINGS, Catalog, CatalogBin, CatalogSku, Store

log = logging.getLogger(__name__)

COLUMNS = ("sku", "name", "gtin", "bin", "zone", "node", "sensored", "weight_only", "unit_weight_g", "unit_weight_cv",
           "reorder_min", "reorder_max", "tracking")
REQUIRED_COLUMNS = frozenset({"sku"})
TRUE_WORDS = frozenset({"1", "yes", "y", "true", "t", "x"})
FALSE_WORDS = frozenset({"", "0", "no", "n", "false", "f"})
WHOLE_RE = re.compile(r"\d{1,9}")


class CatalogError(Exception):
    """The file cannot be read as a catalog at all (missing header columns, not CSV)."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """One CSV row that was not imported, and why."""

    line: int
    column: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}, column '{self.column}': {self.problem}"


@dataclass
class CatalogImport:
    """The parsed file: what would be imported and what was refused."""

    skus: dict[str, CatalogSku] = field(default_factory=dict)
    bins: dict[str, CatalogBin] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)
    rows_read: int = 0


def normalise_gtin(raw: str) -> str:
    """GTIN-8/12/13/14 as 14 digits; ValueError naming the problem when it is not one."""
    digits = raw.strip()
    if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        raise ValueError(f"{raw!r} is not a GTIN (8, 12, 13 or 14 digits)")
    gtin = digits.zfill(14)
    body, check = gtin[:-1], int(gtin[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    if (10 - total % 10) % 10 != check:
        raise ValueError(f"GTIN {raw!r} has a wrong check digit")
    assert GTIN_RE.fullmatch(gtin)
    return gtin


def _bool(raw: str, column: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{raw!r} is not yes/no")


def _float(raw: str, lo: float, hi: float) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{value:g} is outside {lo:g}..{hi:g}")
    return value


def parse_catalog_csv(lines: Iterable[str], progress: bool = False, total_rows: int | None = None) -> CatalogImport:
    """Parse catalog CSV text; bad rows are collected, not raised."""
    reader = csv.DictReader(lines)
    header = set(reader.fieldnames or ())
    missing = REQUIRED_COLUMNS - header
    if missing:
        raise CatalogError(f"the header must name at least the columns {sorted(REQUIRED_COLUMNS)}; "
                           f"it has {sorted(header)} (all columns: {','.join(COLUMNS)})")
    unknown = header - set(COLUMNS)
    if unknown:
        raise CatalogError(f"unknown column(s) {sorted(unknown)}; the columns are {','.join(COLUMNS)}")
    out = CatalogImport()
    gtin_owner: dict[str, str] = {}
    rows: Iterable[dict[str, str]] = reader
    if progress:
        from tqdm import tqdm
        rows = tqdm(reader, total=total_rows, unit="row", desc="catalog")
    for row in rows:
        out.rows_read += 1
        line = reader.line_num
        try:
            _take_row({k: (v or "").strip() for k, v in row.items() if k is not None}, out, gtin_owner)
        except _RowProblem as err:
            out.bad_rows.append(BadRow(line, err.column, err.problem))
    return out


class _RowProblem(Exception):
    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column, self.problem = column, problem


def _take_row(row: dict[str, str], out: CatalogImport, gtin_owner: dict[str, str]) -> None:
    """Check one row completely before taking anything from it (a bad row changes nothing)."""
    sku = row.get("sku", "")
    if not SKU_RE.fullmatch(sku):
        raise _RowProblem("sku", f"{sku!r} is not a SKU (1-64 letters, digits, '.', '_' or '-')")
    gtin = None
    if row.get("gtin"):
        try:
            gtin = normalise_gtin(row["gtin"])
        except ValueError as err:
            raise _RowProblem("gtin", str(err)) from None
        owner = gtin_owner.get(gtin)
        if owner is not None and owner != sku:
            raise _RowProblem("gtin", f"GTIN {gtin} already belongs to SKU {owner!r} in this file")
    tracking = row.get("tracking", "").lower()
    if tracking == "none":
        tracking = TRACKING_NONE
    if tracking not in TRACKINGS:
        raise _RowProblem("tracking", f"{row['tracking']!r} is not a tracking: 'lot', 'serial', or empty for a plain SKU")
    current = out.skus.get(sku)
    if tracking and current is not None and current.tracking and current.tracking != tracking:
        raise _RowProblem("tracking", f"SKU {sku!r} is tracked by {current.tracking} on an earlier line, not {tracking}")
    new_bin = None
    bin_name = row.get("bin", "")
    if bin_name:
        if not LOCATION_RE.fullmatch(bin_name):
            raise _RowProblem("bin", f"{bin_name!r} is not a bin name (1-32 letters, digits, '.', '_' or '-')")
        node = row.get("node") or None
        if node is not None and not NAME_RE.fullmatch(node):
            raise _RowProblem("node", f"{node!r} is not a node name (lowercase letters, digits, '-')")
        try:
            sensored = _bool(row.get("sensored", ""), "sensored")
        except ValueError as err:
            raise _RowProblem("sensored", str(err)) from None
        try:
            weight_only = _bool(row.get("weight_only", ""), "weight_only")
        except ValueError as err:
            raise _RowProblem("weight_only", str(err)) from None
        try:
            unit_weight_g = _float(row.get("unit_weight_g", ""), 0.001, MAX_WEIGHT_G)
        except ValueError as err:
            raise _RowProblem("unit_weight_g", str(err)) from None
        try:
            unit_weight_cv = _float(row.get("unit_weight_cv", ""), 0.0, 1.0)
        except ValueError as err:
            raise _RowProblem("unit_weight_cv", str(err)) from None
        if sensored and unit_weight_g is None:
            raise _RowProblem("unit_weight_g", f"bin {bin_name} has a shelf sensor but no unit weight")
        if weight_only and not sensored:
            raise _RowProblem("weight_only", f"bin {bin_name} is weight-only but has no shelf sensor")
        earlier = out.bins.get(bin_name)
        if earlier is not None and earlier.sku != sku:
            raise _RowProblem("bin", f"bin {bin_name} already holds SKU {earlier.sku!r} in this file")
        new_bin = CatalogBin(bin=bin_name, zone=row.get("zone", ""), sku=sku, node=node, sensored=sensored,
                             weight_only=weight_only, unit_weight_g=unit_weight_g, unit_weight_cv=unit_weight_cv)
    levels = _levels(row, current)
    gtins = current.gtins if current is not None else ()
    if gtin is not None and gtin not in gtins:
        gtins = (*gtins, gtin)
        gtin_owner[gtin] = sku
    name = row.get("name") or (current.name if current is not None else "")
    out.skus[sku] = CatalogSku(sku, name, gtins, tracking or (current.tracking if current is not None else ""),
                               reorder_min=levels[0], reorder_max=levels[1])
    if new_bin is not None:
        out.bins[new_bin.bin] = new_bin


def _levels(row: dict[str, str], current: CatalogSku | None) -> tuple[int | None, int | None]:
    """The row's reorder min/max (both or neither), else what an earlier row of the file gave."""
    raw_min, raw_max = row.get("reorder_min", ""), row.get("reorder_max", "")
    if not raw_min and not raw_max:
        return (current.reorder_min, current.reorder_max) if current is not None else (None, None)
    if not raw_min or not raw_max:
        raise _RowProblem("reorder_min" if not raw_min else "reorder_max",
                          "give both reorder_min and reorder_max, or neither")
    values = []
    for column, raw in (("reorder_min", raw_min), ("reorder_max", raw_max)):
        if not WHOLE_RE.fullmatch(raw):
            raise _RowProblem(column, f"{raw!r} is not a whole number of pieces")
        values.append(int(raw))
    problem = check_manual_levels(values[0], values[1])
    if problem:
        raise _RowProblem("reorder_max", problem)
    if current is not None and current.reorder_min is not None and (current.reorder_min, current.reorder_max) != (
            values[0], values[1]):
        raise _RowProblem("reorder_min", f"SKU {current.sku} already has min/max {current.reorder_min} / "
                                         f"{current.reorder_max} in this file")
    return values[0], values[1]


def import_catalog_file(store: Store, path: str | Path, now_ms: int, progress: bool = True,
                        strict: bool = False) -> tuple[CatalogImport, int | None]:
    """Parse a CSV file and import its good rows; returns the parse and the new catalog rev
    (None when nothing was imported: strict with bad rows, or no rows)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        total = max(sum(1 for _ in fh) - 1, 0)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        parsed = parse_catalog_csv(fh, progress=progress, total_rows=total)
    if (strict and parsed.bad_rows) or not parsed.skus:
        return parsed, None
    rev = store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), now_ms)
    log.info("catalog %s imported as rev %d: %d SKU(s), %d bin(s), %d bad row(s)", path, rev, len(parsed.skus),
             len(parsed.bins), len(parsed.bad_rows))
    return parsed, rev


class CatalogIndex:
    """The catalog as lookups for the writer thread: GTIN -> SKU, bin -> its facts."""

    def __init__(self, catalog: Catalog) -> None:
        self.rev = catalog.rev
        self.skus = frozenset(s.sku for s in catalog.skus)
        self.sku_by_gtin = {g: s.sku for s in catalog.skus for g in s.gtins}
        self._tracking = {s.sku: s.tracking for s in catalog.skus if s.tracking}
        self.bins = {b.bin: b for b in catalog.bins}
        # Reconciled bins on one node are neighbours: a scan meant for one may have moved another.
        on_node: dict[str, list[str]] = {}
        for b in catalog.bins:
            if b.node is not None and b.sensored and not b.weight_only:
                on_node.setdefault(b.node, []).append(b.bin)
        self._neighbours = {name: tuple(n for n in names if n != name) for names in on_node.values() for name in names}
        self._unit_by_sku: dict[str, tuple[float, float | None]] = {}
        for b in catalog.bins:
            if b.sku is not None and b.unit_weight_g is not None:
                self._unit_by_sku.setdefault(b.sku, (b.unit_weight_g, b.unit_weight_cv))

    def resolve_sku(self, gtin: str) -> str:
        """The SKU of a GTIN; a GTIN the catalog does not know stands for itself."""
        return self.sku_by_gtin.get(gtin, gtin)

    def bin(self, name: str) -> CatalogBin | None:
        return self.bins.get(name)

    def tracking(self, sku: str) -> str:
        """How the catalog tracks a SKU's units: "lot", "serial", or "" (plain; also an unknown SKU)."""
        return self._tracking.get(sku, TRACKING_NONE)

    def neighbours(self, name: str) -> tuple[str, ...]:
        """The other reconciled (sensored, not weight-only) bins on the node that serves this one."""
        return self._neighbours.get(name, ())

    def unit_weight(self, name: str, sku: str | None) -> tuple[float | None, float | None]:
        """Unit weight (g) and its piece-to-piece variation of a SKU in a bin: the bin's own when it
        holds that SKU, else the SKU's from any bin; (None, None) when the catalog gives none."""
        where = self.bins.get(name)
        if where is not None and where.unit_weight_g is not None and (sku is None or where.sku in (None, sku)):
            return where.unit_weight_g, where.unit_weight_cv
        return self._unit_by_sku.get(sku or "", (None, None))


def node_configs(catalog: Catalog, ts_ms: int, require_location: bool = True) -> list[NodeConfig]:
    """One retained config per node that serves at least one bin.

    require_location=False lets a scanner book an item to the one bin the catalog gives its
    GTIN when the worker scanned no location (sites that pick by item, not by bin).
    """
    first_gtin = {s.sku: (s.gtins[0] if s.gtins else None) for s in catalog.skus}
    by_node: dict[str, list[BinConfig]] = {}
    for b in catalog.bins:
        if b.node is None:
            continue
        by_node.setdefault(b.node, []).append(BinConfig(bin=b.bin, gtin=first_gtin.get(b.sku or ""),
                                                        unit_weight_g=b.unit_weight_g,
                                                        unit_weight_cv=b.unit_weight_cv))
    return [NodeConfig(node=node, rev=catalog.rev, ts_ms=ts_ms, bins=tuple(bins), require_location=require_location)
            for node, bins in sorted(by_node.items())]
