"""Helpers for the ledger, reconcile and store tests: drive the real Ingest on a real SQLite file.

No tests here. Payloads are built with the contract's own dataclasses and `to_json`, and
go in through `Ingest.submit(topic, payload)`, the same call the MQTT link makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract import Birth, Channel, Event, EventBatch, ScanEvent, ShelfCount, node_topic
from hub.catalog import parse_catalog_csv
from hub.ingest import CommitResult, Ingest
from hub.store import SqliteStore

SITE = "test-site"
T0_MS = 1_750_000_000_000  # a fixed device epoch: tests choose every event time
GTINS = ("09506000134352", "09506000134376", "04006381333931", "00012345600012", "05012345678900",
         "04012345678901", "00614141999996", "09501101530003")


def scan_ev(seq: int, t_ms: int, mode: str, location: str, qty: int, gtin: str = GTINS[0],
            from_location: str | None = None) -> ScanEvent:
    return ScanEvent(seq=seq, ts_ms=t_ms, accepted_ms=t_ms, scanner="s1", mode=mode, gtin=gtin, location=location,
                     qty=qty, from_location=from_location)


def shelf_ev(seq: int, t_ms: int, bin_name: str, count: int, unit_weight_g: float = 10.0,
             uncertain: bool = False, heartbeat: bool = False) -> ShelfCount:
    return ShelfCount(seq=seq, ts_ms=t_ms, accepted_ms=t_ms, bin=bin_name, count=count,
                      quotient=float(count), weight_g=count * unit_weight_g,
                      confidence=0.4 if uncertain else 0.97, uncertain=uncertain, heartbeat=heartbeat)


def catalog_csv(rows: Sequence[tuple[str, str, str, str, bool, bool]]) -> list[str]:
    """CSV lines for (sku, gtin, bin, node, sensored, weight_only) rows."""
    lines = ["sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n"]
    for sku, gtin, bin_name, node, sensored, weight_only in rows:
        lines.append(f"{sku},{sku} name,{gtin},{bin_name},Z,{node},{'yes' if sensored else 'no'},"
                     f"{'yes' if weight_only else 'no'},{'10' if sensored else ''},\n")
    return lines


class Feeder:
    """A real Ingest on a real SQLite file, fed contract JSON, drained deterministically."""

    def __init__(self, path: Path, window_ms: int = 30_000, catalog: list[str] | None = None) -> None:
        self.path = path
        self.store = SqliteStore(path, "NORMAL")
        if catalog is not None:
            parsed = parse_catalog_csv(catalog)
            assert not parsed.bad_rows, parsed.bad_rows
            self.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), T0_MS)
        self.acks: list[Any] = []
        self.commands: list[Any] = []
        self.commits: list[CommitResult] = []
        self.ingest = Ingest(self.store, SITE, self.acks.append, lambda n, c: self.commands.append((n, c)),
                             self.commits.append, window_ms=window_ms)
        self.ingest.start()

    def send(self, node: str, stream: str, events: Sequence[Event], sent_ms: int = T0_MS) -> None:
        payload = EventBatch(node=node, stream=stream, events=tuple(events), sent_ms=sent_ms).to_json()
        self.ingest.submit(node_topic(SITE, node, Channel.EVENTS), payload)

    def birth(self, node: str, stream: str, clock_ms: int, received_ms: int, last_seq: int = 0) -> None:
        payload = Birth(node=node, boot_id="b1", sw_version="t", clock_ms=clock_ms, stream=stream,
                        last_seq=last_seq, outbox_depth=0).to_json()
        self.ingest.submit(node_topic(SITE, node, Channel.BIRTH), payload, received_ms=received_ms)

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything submitted so far is committed (a no-op job queued behind it)."""
        self.ingest.run_in_writer(lambda tx: None).result(timeout_s)

    def balances(self) -> dict[tuple[str, str], int]:
        return {(b.sku, b.location): b.qty for b in self.store.stock("", 10_000_000, 0) if b.qty != 0}

    def rebuilt(self) -> dict[tuple[str, str], int]:
        return {(b.sku, b.location): b.qty for b in self.store.rebuild_balances() if b.qty != 0}

    def close(self) -> None:
        self.ingest.stop()
        self.store.close()
