"""free_port() (hub/mosquitto.py): ports the tests and the demo bind later, handed out from below
the kernel's ephemeral range so no outgoing connection can take one in between (a test once
failed with "address already in use" on a port the kernel had picked), each process on its own
sequence, a port in use skipped."""

from __future__ import annotations

import socket

import pytest

from hub import mosquitto


def test_ports_come_from_below_the_ephemeral_range_and_can_be_bound() -> None:
    ephemeral_start = int(mosquitto.EPHEMERAL_RANGE_FILE.read_text().split()[0])
    ports = [mosquitto.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    assert all(ephemeral_start - mosquitto.HANDED_OUT_PORTS <= p < ephemeral_start for p in ports), ports
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # The sequence is made to land on the busy port first: the next one is handed out instead.
        monkeypatch.setattr(mosquitto, "_handed_out_ports", lambda: range(busy, busy + 2))
        monkeypatch.setattr(mosquitto, "_next_port", iter([0, 1]))
        assert mosquitto.free_port() == busy + 1
