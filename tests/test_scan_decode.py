"""Decoding: real barcodes as evdev key-event sequences and as text, and fuzzing the decoders."""

from __future__ import annotations

import os

import pytest
from evdev import InputEvent, ecodes
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import ScanEvent, ScanRejected
from edge.scan.decode import BadScan, ItemScan, LocationScan, ModeScan, PalletScan, QtyScan, decode
from edge.scan.keys import KeyDecoder, text_to_events
from edge.scan.serial_port import LineFramer
from edge.scan.workflow import ScanWorkflow

GS = "\x1d"


def keys_to_scans(events: list[InputEvent], suffix: str = "enter") -> list[str]:
    decoder = KeyDecoder(suffix)
    return [text for text in (decoder.feed(e) for e in events) if text is not None]


def scan_keys(text: str) -> str:
    """Type `text` as a US-layout scanner would and read it back through the key decoder."""
    scans = keys_to_scans(text_to_events(text))
    assert len(scans) == 1
    return scans[0]


def test_gs1_128_with_lot_and_expiry_from_key_events() -> None:
    raw = scan_keys(f"]C10104006381333931{GS}10ABC-123{GS}17260630")
    assert decode(raw) == ItemScan(gtin="04006381333931", lot="ABC-123", expiry="2026-06-30", symbology="]C1")


def test_datamatrix_with_group_separators_from_key_events() -> None:
    raw = scan_keys(f"]d2010400638133393110LOT7{GS}17270100{GS}21SN0042{GS}3012")
    assert raw.count(GS) == 3
    # Day 00 means the last day of the month (GS1 General Specifications).
    assert decode(raw) == ItemScan(gtin="04006381333931", qty=12, lot="LOT7", expiry="2027-01-31",
                                   serial="SN0042", symbology="]d2")


def test_ctrl_right_bracket_is_the_group_separator() -> None:
    events = [InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_LEFTCTRL, 1),
              InputEvent(0, 1, ecodes.EV_KEY, ecodes.KEY_RIGHTBRACE, 1),
              InputEvent(0, 2, ecodes.EV_KEY, ecodes.KEY_RIGHTBRACE, 0),
              InputEvent(0, 3, ecodes.EV_KEY, ecodes.KEY_LEFTCTRL, 0),
              InputEvent(0, 4, ecodes.EV_KEY, ecodes.KEY_ENTER, 1)]
    assert keys_to_scans(events) == [GS]


def test_ean13_and_upc_a_normalised_to_14_digits() -> None:
    assert decode(scan_keys("]E04006381333931")) == ItemScan(gtin="04006381333931", symbology="]E0")
    # UPC-A as scanners send it without AIM prefix: 12 digits.
    assert decode(scan_keys("036000291452")) == ItemScan(gtin="00036000291452")
    assert decode(scan_keys("]E412345670")) == ItemScan(gtin="00000012345670", symbology="]E4")


def test_location_and_quantity_labels() -> None:
    assert decode(scan_keys("]C0LOC:A-03-2")) == LocationScan("A-03-2")
    assert decode(scan_keys("QTY:24")) == QtyScan(24)
    assert decode(scan_keys("MODE:PUTAWAY")) == ModeScan("putaway")


def test_a_location_with_a_trailing_newline_is_refused_at_the_edge() -> None:
    """Matched whole, as the hub matches it: `$` alone would let "DOCK\n" through the config check."""
    assert decode("]C0LOC:A-03-2\n") == LocationScan("A-03-2")  # a terminator left on a scan is stripped
    assert isinstance(decode("]C0LOC:A-03\n-2"), BadScan)
    from edge.scan.config import _location
    assert _location("DOCK\n") is not None and _location("DOCK") is None


def test_shift_state_and_key_repeat() -> None:
    events = text_to_events("LOC:B-01")
    # A kernel autorepeat (value 2) of the 'B' key must not add a second B.
    b_down = next(i for i, e in enumerate(events) if e.code == ecodes.KEY_B and e.value == 1)
    events.insert(b_down + 1, InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_B, 2))
    assert keys_to_scans(events) == ["LOC:B-01"]


def test_tab_suffix() -> None:
    assert keys_to_scans(text_to_events("]E04006381333931", suffix="tab"), suffix="tab") == ["]E04006381333931"]


def test_sscc_pallet_and_po_on_one_label() -> None:
    assert decode(f"]C100340123450000000017{GS}400PO-77") == PalletScan("340123450000000017", "]C1")
    item = decode(f"]C100340123450000000017{GS}0204006381333931{GS}3712{GS}400PO-77")
    assert item == ItemScan(gtin="04006381333931", qty=12, sscc="340123450000000017", po="PO-77", symbology="]C1")


def test_net_weight_ai_310n() -> None:
    assert decode(f"]C10104006381333931{GS}3103001250") == ItemScan(gtin="04006381333931", net_weight_g=1250.0,
                                                                     symbology="]C1")


@pytest.mark.parametrize(("raw", "reason"), [
    ("4006381333932", "bad check digit in GTIN 4006381333932: expected 1"),
    (f"]C10104006381333932{GS}10X", "bad check digit in GTIN 04006381333932: expected 1"),
    ("]C100340123450000000018", "bad check digit in SSCC 340123450000000018: expected 7"),
    ("]Z9abc", "unknown symbology"),
    ("hello", "neither a GTIN"),
    ("MODE:dance", "names no mode"),
    ("QTY:-3", "not a whole number"),
    ("LOC:A 03", "not a valid bin name"),
])
def test_invalid_barcodes_have_reasons(raw: str, reason: str) -> None:
    result = decode(raw)
    assert isinstance(result, BadScan)
    assert reason in result.reason


def test_unmapped_key_is_rejected_not_dropped() -> None:
    events = text_to_events("]E04006381333931")
    events.insert(0, InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_F1, 1))
    result = decode(keys_to_scans(events)[0])
    assert isinstance(result, BadScan) and "US layout" in result.reason


@pytest.mark.skipif(not os.path.exists("/dev/uinput"), reason="no /dev/uinput on this machine: the "
                    "key-event decoding tests above run on evdev.InputEvent sequences instead")
def test_virtual_keyboard_through_real_evdev() -> None:
    import select

    from evdev import InputDevice, UInput

    with UInput({ecodes.EV_KEY: list(range(1, 120))}, name="test-scanner") as ui:
        device = InputDevice(ui.device.path)
        device.grab()
        try:
            for event in text_to_events("]C0LOC:A-03-2"):
                ui.write_event(event)
            ui.syn()
            decoder, scans = KeyDecoder(), []
            while not scans:
                assert select.select([device.fd], [], [], 5)[0], "no events from uinput within 5 s"
                scans += [t for t in (decoder.feed(e) for e in device.read()) if t is not None]
            assert decode(scans[0]) == LocationScan("A-03-2")
        finally:
            device.ungrab()
            device.close()


# ------------------------------------------------------------------ property-based

def _outcome_of(raw: str) -> ScanEvent | ScanRejected | None:
    workflow = ScanWorkflow("fuzz", mode="pick")
    step = workflow.handle(decode(raw), raw, 1_700_000_000_000)
    if step.event is not None:
        # Whatever comes out must be valid on the wire.
        from contract import event_from_dict
        event_from_dict(step.event.with_seq(1, 1_700_000_000_000).to_dict())
    if not step.accepted:
        assert isinstance(step.event, ScanRejected) and step.event.reason
    return step.event


key_events = st.builds(InputEvent, st.just(0), st.just(0), st.sampled_from([ecodes.EV_KEY, ecodes.EV_SYN, ecodes.EV_MSC]),
                       st.integers(0, 300), st.integers(0, 2))


@settings(max_examples=300, deadline=None)
@given(st.lists(key_events, max_size=200))
def test_random_key_sequences_never_raise(events: list[InputEvent]) -> None:
    decoder = KeyDecoder()
    for event in events:
        text = decoder.feed(event)
        if text is not None:
            _outcome_of(text)
    rest = decoder.flush()
    if rest is not None:
        _outcome_of(rest)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"\r\n", b"\r", b"\n"]))
def test_random_bytes_never_raise(data: bytes, terminator: bytes) -> None:
    framer = LineFramer(terminator)
    for scan in framer.feed(data):
        _outcome_of(scan)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["]C1", "]d2", "]E0", "]Q3", "]e0", ""]),
       st.text(alphabet="0123456789" + GS + "ABC", max_size=60))
def test_random_gs1_like_text_never_raises(prefix: str, body: str) -> None:
    _outcome_of(prefix + body)


# GS1 Digital Link URIs, as QR codes and DataMatrix codes print them (GS1 Digital Link standard 1.x).
@pytest.mark.parametrize("raw, expected", [
    ("https://id.gs1.org/01/09506000134352/10/ABC123",
     ItemScan(gtin="09506000134352", lot="ABC123")),
    ("]Q1https://id.gs1.org/01/09506000134352/10/ABC123?17=261231",
     ItemScan(gtin="09506000134352", lot="ABC123", expiry="2026-12-31", symbology="]Q1")),
    # A brand's own domain and path prefix, serial in the path, expiry and net weight in the query string.
    ("https://brand.example.com/products/01/09506000134352/21/SN0042?17=270100&3103=000195",
     ItemScan(gtin="09506000134352", serial="SN0042", expiry="2027-01-31", net_weight_g=195.0)),
    # A GTIN-13 in its 14-digit form, and the scheme in capitals (a scanner in caps-lock mode).
    ("HTTPS://id.gs1.org/01/04006381333931?10=L653&17=270630",
     ItemScan(gtin="04006381333931", lot="L653", expiry="2027-06-30")),
    # The DataMatrix form with its AIM identifier.
    ("]d1https://id.gs1.org/01/04006381333931/10/L%2F7",
     ItemScan(gtin="04006381333931", lot="L/7", symbology="]d1")),
])
def test_gs1_digital_link_uris_decode_like_element_strings(raw: str, expected: ItemScan) -> None:
    assert decode(raw) == expected


def test_digital_link_and_element_string_of_one_label_are_the_same_scan() -> None:
    uri = decode("https://id.gs1.org/01/04006381333931/10/ABC-123?17=260630")
    element_string = decode(f"]C10104006381333931{GS}10ABC-123{GS}17260630")
    assert isinstance(uri, ItemScan) and isinstance(element_string, ItemScan)
    assert (uri.gtin, uri.lot, uri.expiry) == (element_string.gtin, element_string.lot, element_string.expiry)


def test_digital_link_through_a_keyboard_wedge_scanner() -> None:
    raw = scan_keys("]Q1https://id.gs1.org/01/09506000134352/10/ABC123?17=261231")
    assert decode(raw) == ItemScan(gtin="09506000134352", lot="ABC123", expiry="2026-12-31", symbology="]Q1")


def test_digital_link_sscc_is_a_pallet() -> None:
    assert decode("https://id.gs1.org/00/106141412345678908") == PalletScan("106141412345678908")


@pytest.mark.parametrize("raw, reason", [
    ("https://id.gs1.org/01/09506000134353/10/ABC",
     "bad check digit in GTIN 09506000134353: expected 2; rescan, or key the item in at the hub if the label is damaged"),
    ("https://www.example.com/about",
     "web address 'https://www.example.com/about' is not a GS1 Digital Link (Expected a primary identifier in the "
     "path, got '/about'.); scan the item's GS1 barcode or its Digital Link QR code"),
    ("https://id.gs1.org/01/09506000134352?17=261399", "is not a GS1 Digital Link"),
])
def test_bad_digital_links_are_rejected_with_the_reason(raw: str, reason: str) -> None:
    decoded = decode(raw)
    assert isinstance(decoded, BadScan) and reason in decoded.reason


def test_lot_outside_gs1_character_set_is_rejected() -> None:
    # biip checks each AI's value against GS1's pattern: '#' is not in character set 82, and
    # the contract's lot pattern (contract.messages.LOT_RE) is the same set.
    for raw in ("https://id.gs1.org/01/09506000134352/10/L%23653", f"]C10109506000134352{GS}10L#653"):
        decoded = decode(raw)
        assert isinstance(decoded, BadScan) and "#653'" in decoded.reason, decoded
