"""The per-scanner state machine, the tools and the documentation of every scanner key."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import pytest

from contract import ScanEvent, ScanRejected
from edge.scan import build_scanner
from edge.scan.config import SCANNER_SETTINGS
from edge.scan.decode import decode
from edge.scan.tools import add_subcommands, describe_step, watch
from edge.scan.workflow import ScanWorkflow, Step

ROOT = Path(__file__).resolve().parent.parent
GTIN = "04006381333931"
EAN = "]E04006381333931"


def run(workflow: ScanWorkflow, *raws: str) -> list[Step]:
    return [workflow.handle(decode(raw), raw, 1_700_000_000_000) for raw in raws]


def test_pick_without_location_is_rejected_with_reason() -> None:
    step = run(ScanWorkflow("s", mode="pick"), EAN)[0]
    assert not step.accepted and isinstance(step.event, ScanRejected)
    assert step.event.reason == f"pick of GTIN {GTIN} needs a location: scan the bin's LOC: label first"


def test_putaway_starts_from_the_dock_scanned_in_receive() -> None:
    steps = run(ScanWorkflow("s", mode="receive", receiving_locations=["DOCK-2"]), "LOC:DOCK-2", EAN,
                "MODE:PUTAWAY", "LOC:B-04", EAN)
    receive, putaway = steps[1].event, steps[4].event
    assert isinstance(receive, ScanEvent) and (receive.location, receive.qty) == ("DOCK-2", 1)
    assert isinstance(putaway, ScanEvent) and (putaway.from_location, putaway.location) == ("DOCK-2", "B-04")


def test_putaway_defaults_to_the_configured_dock() -> None:
    event = run(ScanWorkflow("s", mode="putaway", dock_location="INBOUND"), "LOC:B-04", EAN)[1].event
    assert isinstance(event, ScanEvent) and event.from_location == "INBOUND"


def test_move_needs_source_then_destination() -> None:
    wf = ScanWorkflow("s", mode="move")
    steps = run(wf, "LOC:A-01", EAN, "LOC:B-02", "QTY:4", EAN, "LOC:C-03", "LOC:D-04", EAN)
    assert isinstance(steps[1].event, ScanRejected) and "scan the destination" in steps[1].event.reason
    moves = [s.event for s in steps if isinstance(s.event, ScanEvent)]
    assert [(m.from_location, m.location, m.qty) for m in moves] == [("A-01", "B-02", 4), ("C-03", "D-04", 1)]


def test_count_tallies_pieces_or_takes_the_quantity_label() -> None:
    steps = run(ScanWorkflow("s", mode="count"), "LOC:A-01", EAN, EAN, EAN, "QTY:0", "]E0036000291452")
    counts = [s.event for s in steps if isinstance(s.event, ScanEvent)]
    assert [(c.gtin, c.qty) for c in counts] == [(GTIN, 1), (GTIN, 2), (GTIN, 3), ("00036000291452", 0)]


def test_quantity_label_times_ai_37_and_zero_rejected_outside_count() -> None:
    wf = ScanWorkflow("s", mode="pick")
    steps = run(wf, "LOC:A-01", "QTY:3", "]C10204006381333931\x1d3712", "QTY:0", EAN)
    assert isinstance(steps[2].event, ScanEvent) and steps[2].event.qty == 36
    assert isinstance(steps[4].event, ScanRejected) and "quantity 0" in steps[4].event.reason


def test_receive_references_sscc_and_po() -> None:
    wf = ScanWorkflow("s", mode="receive")
    steps = run(wf, "]C100340123450000000017", EAN, "PO:4500012345", EAN, "MODE:PICK", "]C100340123450000000017")
    assert [s.event.ref for s in steps[:4] if isinstance(s.event, ScanEvent)] == ["340123450000000017", "4500012345"]
    assert isinstance(steps[5].event, ScanRejected) and "only means something when receiving" in steps[5].event.reason


def test_mode_change_and_clear_forget_the_bin() -> None:
    wf = ScanWorkflow("s", mode="pick")
    steps = run(wf, "OP:bob", "LOC:A-01", "MODE:COUNT", EAN, "LOC:A-01", "CLEAR", EAN)
    assert isinstance(steps[3].event, ScanRejected) and isinstance(steps[6].event, ScanRejected)
    assert wf.state.operator == "bob"


def test_every_scanner_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "scanning.md").read_text()
    missing = [s.key for s in SCANNER_SETTINGS if f"`{s.key}`" not in doc]
    assert not missing, f"docs/scanning.md does not document {missing}"


def test_cli_registers_devices_and_watch_scans(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers())
    args = parser.parse_args(["devices"])
    assert args.func(args) == 0
    assert "Serial devices" in capsys.readouterr().out
    args = parser.parse_args(["watch-scans"])
    assert args.func(args) == 2  # no source given: one-line error, no traceback


async def test_watch_scans_shows_decoded_scans_from_a_pty(tmp_path: Path) -> None:
    master, slave = os.openpty()
    lines: list[str] = []
    seen = asyncio.Event()

    def observer(raw: str, step: Step, _stored: object) -> None:
        lines.append(describe_step("watch", raw, step))
        if len(lines) == 2:
            seen.set()

    source = build_scanner({"name": "watch", "port": os.ttyname(slave), "terminator": "cr"}, observer=observer)
    task = asyncio.create_task(watch([source]))
    try:
        await asyncio.wait_for(_until_present(source), 5)
        os.write(master, b"LOC:A-01\r]E04006381333932\r")
        await asyncio.wait_for(seen.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(master)
        os.close(slave)
    assert lines[0] == "watch      OK  pick at A-01    [LOC:A-01]"
    assert lines[1].startswith("watch      REJ bad check digit in GTIN 4006381333932: expected 1")


async def _until_present(source: object) -> None:
    while not source.device_info().present:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)


async def test_gpio_feedback_pulses_the_sysfs_value_file(tmp_path: Path) -> None:
    from edge.scan.feedback import GpioFeedback

    ok, err = tmp_path / "gpio17-value", tmp_path / "gpio27-value"
    ok.write_text("0")
    err.write_text("0")
    feedback = GpioFeedback("s", str(ok), str(err), pulse_ms=10_000)
    await feedback.signal(False, "bad check digit")
    assert (ok.read_text(), err.read_text()) == ("0", "1")
    await feedback.aclose()  # shutdown mid-pulse: the buzzer must not stay on
    assert (ok.read_text(), err.read_text()) == ("0", "0")


async def test_gpio_feedback_says_at_start_why_it_cannot_work(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    import errno

    from edge.scan.feedback import GpioFeedback, gpio_write_hint

    # Raspberry Pi OS on kernel 6.6+ numbers BCM 17 as gpio529: the old path does not exist.
    feedback = GpioFeedback("dock-1", str(tmp_path / "gpio17" / "value"), "", pulse_ms=50)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "scanner dock-1: GPIO feedback will not work" in errors[0]
    assert "export the line" in errors[0] and "gpiochip*/base" in errors[0]
    await feedback.signal(True, "ok")  # the scan goes on; the failed write is a warning, not a crash
    assert "could not write 1" in caplog.text
    await feedback.aclose()
    # Under the unit without the drop-in, sysfs is read-only: the hint names the fix.
    assert "edge-agent-gpio.conf" in gpio_write_hint(OSError(errno.EROFS, "Read-only file system"))


# ---- returns, expiry (docs/scanning.md "Returns", "Expiry")

TODAY_MS = 1_700_000_000_000  # 2023-11-14 UTC: what run() scans at
EXPIRED_LABEL = f"]C101{GTIN}\x1d10L653\x1d17231031"  # lot L653, expired on 2023-10-31
FRESH_LABEL = f"]C101{GTIN}\x1d10L700\x1d17251231"


def test_return_needs_a_location_and_a_reason_card_then_both_stay() -> None:
    steps = run(ScanWorkflow("s", mode="pick"), "MODE:RETURN", EAN, "LOC:QUARANTINE", EAN, "RET:damaged", EAN,
                "QTY:2", FRESH_LABEL, "CLEAR", "LOC:QUARANTINE", EAN)
    assert isinstance(steps[1].event, ScanRejected) and "scan the quarantine or restock location" in steps[1].message
    assert isinstance(steps[3].event, ScanRejected) and "scan the reason card (RET:DAMAGED, ...) first" in steps[3].message
    assert steps[4].event is None and steps[4].message == "returns for reason DAMAGED into QUARANTINE"
    returns = [s.event for s in steps if isinstance(s.event, ScanEvent)]
    assert [(r.mode, r.location, r.qty, r.return_reason, r.lot) for r in returns] == [
        ("return", "QUARANTINE", 1, "DAMAGED", None), ("return", "QUARANTINE", 2, "DAMAGED", "L700")]
    assert steps[5].message == f"return 1 x {GTIN} at QUARANTINE (reason DAMAGED)"
    # CLEAR forgot the reason: the worker must scan the card again.
    assert isinstance(steps[10].event, ScanRejected) and "scan the reason card" in steps[10].message


def test_reason_card_outside_return_mode_is_refused() -> None:
    step = run(ScanWorkflow("s", mode="receive"), "RET:DAMAGED")[0]
    assert isinstance(step.event, ScanRejected)
    assert step.event.reason == "return reason card DAMAGED only applies to returns; scan MODE:RETURN first"


def test_receipt_of_expired_goods_is_refused_and_nothing_is_remembered() -> None:
    wf = ScanWorkflow("s", mode="receive")
    steps = run(wf, EXPIRED_LABEL, "MODE:PUTAWAY", "LOC:A-01", EXPIRED_LABEL)
    assert isinstance(steps[0].event, ScanRejected)
    assert steps[0].event.reason == (f"receive of GTIN {GTIN} lot L653: expired on 2023-10-31, so it is not received; "
                                     "set it aside for the supervisor (or check the label's date)")
    assert wf.received.source(GTIN, lot="L653").location is None  # the refused receipt was not remembered
    fresh = run(wf, "MODE:RECEIVE", FRESH_LABEL)[1].event
    assert isinstance(fresh, ScanEvent) and (fresh.lot, fresh.expiry) == ("L700", "2025-12-31")


def test_pick_of_expired_goods_is_recorded_with_a_warning() -> None:
    steps = run(ScanWorkflow("s", mode="pick"), "LOC:A-01", EXPIRED_LABEL, FRESH_LABEL)
    expired, fresh = steps[1], steps[2]
    assert expired.accepted and expired.warning and isinstance(expired.event, ScanEvent)
    assert expired.message.startswith(f"EXPIRED: lot L653 of GTIN {GTIN} expired on 2023-10-31; the pick is recorded")
    assert fresh.accepted and not fresh.warning
    assert describe_step("s", EXPIRED_LABEL, expired).startswith("s          WRN EXPIRED: lot L653")


async def test_expired_pick_sends_the_warning_signal_to_a_serial_scanner() -> None:
    """Through a pty: the scanner gets `feedback_warning`'s bytes back for the expired pick."""
    master, slave = os.openpty()
    done = asyncio.Event()
    steps: list[Step] = []

    def observer(raw: str, step: Step, _stored: object) -> None:
        steps.append(step)
        if len(steps) == 3:
            done.set()

    source = build_scanner({"name": "pick-1", "port": os.ttyname(slave), "terminator": "cr", "mode": "pick",
                            "feedback": "serial", "feedback_ok": "K", "feedback_error": "E",
                            "feedback_notice": "N", "feedback_warning": "W"}, observer=observer)
    task = asyncio.create_task(watch([source]))
    try:
        await asyncio.wait_for(_until_present(source), 5)
        expired = f"]C101{GTIN}\x1d10L653\x1d17200131"  # expired on 2020-01-31, long before any clock this runs on
        fresh = f"]C101{GTIN}\x1d10L700\x1d17491231"  # 2049-12-31 (GS1 reads YY within -49..+50 years)
        os.write(master, f"LOC:A-01\r{expired}\r{fresh}\r".encode())
        await asyncio.wait_for(done.wait(), 5)
        got = b""
        while len(got) < 3:
            got += await asyncio.wait_for(asyncio.to_thread(os.read, master, 16), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(master)
        os.close(slave)
    assert [s.warning for s in steps] == [False, True, False]
    assert got == b"NWK"  # notice for the location label, warning for the expired lot, OK for the fresh one


def test_pick_of_a_lot_received_with_a_date_that_has_passed_warns_without_a_date_on_its_label() -> None:
    received = ScanWorkflow("dock", mode="receive").received
    dock = ScanWorkflow("dock", mode="receive", received=received)
    picker = ScanWorkflow("pick", mode="pick", received=received)  # another scanner of the same node
    receipt = dock.handle(decode(f"]C101{GTIN}\x1d10L653\x1d17231231"), "r", TODAY_MS - 60 * 86_400_000)
    assert isinstance(receipt.event, ScanEvent)  # received in September, good until the end of December
    picker.handle(decode("LOC:A-01"), "LOC:A-01", TODAY_MS)
    late = picker.handle(decode(f"https://id.gs1.org/01/{GTIN}/10/L653"), "p", TODAY_MS + 60 * 86_400_000)
    other = picker.handle(decode(f"https://id.gs1.org/01/{GTIN}/10/L654"), "p", TODAY_MS + 60 * 86_400_000)
    assert late.warning and "expired on 2023-12-31" in late.message
    assert not other.warning  # a lot this node never received: nothing to judge by
