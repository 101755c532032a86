"""Line decoders: MT-SICS transcripts and HX711-bridge frames parse right; garbage never crashes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.shelf.protocols import DISCONNECTED, OVERLOAD, UNDERLOAD, GarbageLine, Hx711Bridge, MtSics
from edge.shelf.protocols.base import BUSY
from edge.shelf.protocols.hx711_bridge import encode_line


@pytest.mark.parametrize(("line", "sample", "stable"), [
    (b"S S     100.00 g", 100.0, True),
    (b"S D     100.02 g", 100.02, False),
    (b"S S      -0.37 g", -0.37, True),
    (b"S S       1.250 kg", 1250.0, True),
    (b"S D      12.5 mg", 0.0125, False),
])
def test_mtsics_weights(line: bytes, sample: float, stable: bool) -> None:
    frame = MtSics(1).decode(line)
    assert frame.kind == "data"
    assert frame.samples == [pytest.approx(sample)]
    assert frame.stable is stable


@pytest.mark.parametrize(("line", "status"), [(b"S +", OVERLOAD), (b"S -", UNDERLOAD), (b"S I", BUSY)])
def test_mtsics_status_replies(line: bytes, status: str) -> None:
    frame = MtSics(1).decode(line)
    assert (frame.kind, frame.samples) == ("data", [status])


@pytest.mark.parametrize(("line", "kind"), [
    (b"ES", "error"), (b"ET", "error"), (b"EL", "error"),
    (b"Z A", "reply"), (b"Z I", "reply"), (b"Z +", "reply"), (b"Z -", "reply"),
    (b"T S     123.45 g", "reply"), (b"T I", "reply"), (b"T +", "reply"),
    (b'I4 A "B021002593"', "hello"),
])
def test_mtsics_command_and_error_replies(line: bytes, kind: str) -> None:
    assert MtSics(1).decode(line).kind == kind


@pytest.mark.parametrize("line", [
    b"", b"S", b"S S", b"S S 100.00", b"S X 100.00 g", b"S S abc g", b"S S 100.00 furlongs", b"S S nan g",
    b"Z Q", b"\xff\xfe", b"S S     10", b"XYZ 1 2 3",
])
def test_mtsics_garbage_is_rejected(line: bytes) -> None:
    with pytest.raises(GarbageLine):
        MtSics(1).decode(line)


def test_hx711_data_hello_and_statuses() -> None:
    proto = Hx711Bridge(3)
    hello = proto.decode(encode_line("H HXB/1 ch=3 rate=80 fw=1.0").rstrip(b"\n"))
    assert hello.kind == "hello"
    frame = proto.decode(encode_line("D 7 1234 X 8388607").rstrip(b"\n"))
    assert frame.samples == [1234, DISCONNECTED, OVERLOAD]
    frame = proto.decode(encode_line("D 9 -8388608 0 -5").rstrip(b"\n"))
    assert frame.samples == [UNDERLOAD, 0, -5]
    assert proto.dropped_frames == 1  # seq 8 never arrived


@pytest.mark.parametrize("line", [
    b"D 1 100 200 300",  # no checksum
    encode_line("D 1 100 200 300")[:-6],  # truncated
    encode_line("D 1 100 200 300").replace(b"200", b"201"),  # corrupted digit
    encode_line("D 1 100 200"),  # too few channels
    encode_line("D 1 100 2x0 300"),  # not a number
    encode_line("Q what"),
])
def test_hx711_garbage_is_rejected(line: bytes) -> None:
    with pytest.raises(GarbageLine):
        Hx711Bridge(3).decode(line.rstrip(b"\n"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_either_decode_or_raise_garbage(line: bytes) -> None:
    for proto in (Hx711Bridge(2), MtSics(1)):
        with contextlib.suppress(GarbageLine):
            proto.decode(line)
