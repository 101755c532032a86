"""MQTT for other consumers: the hub publishes stock state under its own topics, integration
accounts read exactly that, and provisioning keeps ACL lines it did not write.

Real parts: a private Mosquitto with a password file and the site ACL, reloaded by SIGHUP as
a packaged one is; the hub; an edge agent; and a plain paho client as the integration.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from contract.outbound import BinStock, DiscrepancyCounts, HubAlert, SkuStock
from hub.mosquitto import ACL_BEGIN, HUB_USER, LEGACY_ACL_HEADER, PrivateBroker, acl_text, set_password
from hub.provision import add_integration, provision_node, remove_integration
from tests.support import (
    NOT_AUTHORIZED,
    SITE,
    Peer,
    RunningHub,
    connect_when_accepted,
    open_discrepancy,
    refused_when_revoked,
    running_agent,
    scan,
    wait_for,
)

GTIN = "09506000134352"
FAST = {"min_interval_ms": 10}


def _messages(peer: Peer, topic: str) -> list[Any]:
    with peer.cond:
        return [m for m in peer.messages if m.topic == topic]


def _latest(peer: Peer, topic: str, parse: Any) -> Any:
    found = _messages(peer, topic)
    return parse(found[-1].payload) if found else None


async def test_integration_reads_the_published_state_and_nothing_else(
        site_broker: tuple[PrivateBroker, Path], tmp_path: Path) -> None:
    broker, pid_file = site_broker
    user, password = add_integration("andon", password_file=broker.password_file, acl_file=broker.acl_file,
                                     mosquitto_pid_file=pid_file)
    assert user == "integration.andon"
    integrations = {**FAST, "home_assistant": True}
    async with RunningHub(broker, tmp_path, integrations=integrations), running_agent(broker, tmp_path) as agent:
        with connect_when_accepted(broker, user, password) as peer:
            peer.subscribe(f"wh/v1/{SITE}/hub/#")
            peer.subscribe(f"wh/v1/{SITE}/+/events")  # granted by the broker, but nothing may be delivered
            peer.subscribe("homeassistant/#")
            await agent.sink.submit(scan(gtin=GTIN, location="A-01-2", qty=5, mode="receive"))
            bin_topic, sku_topic = f"wh/v1/{SITE}/hub/bins/A-01-2", f"wh/v1/{SITE}/hub/skus/{GTIN}"
            state = await wait_for(lambda: _latest(peer, bin_topic, BinStock.from_json), what="bin state")
            assert (state.qty, [(i.sku, i.qty) for i in state.items]) == (5, [(GTIN, 5)])
            sku = await wait_for(lambda: _latest(peer, sku_topic, SkuStock.from_json), what="SKU state")
            assert sku.on_hand == 5
            counts = await wait_for(lambda: _latest(peer, f"wh/v1/{SITE}/hub/discrepancies",
                                                    DiscrepancyCounts.from_json), what="discrepancy counts")
            assert counts.open == 0
            # Home Assistant discovery: a retained sensor config pointing at the bin's state topic.
            configs = await wait_for(lambda: [json.loads(m.payload) for m in peer.messages
                                              if m.topic.startswith("homeassistant/sensor/")
                                              and json.loads(m.payload)["state_topic"] == bin_topic],
                                     what="a Home Assistant sensor for the bin")
            assert configs[0]["value_template"] == "{{ value_json.qty }}"

            await agent.sink.submit(scan(gtin=GTIN, location="A-01-2", qty=3, mode="receive"))
            await wait_for(lambda: (_latest(peer, bin_topic, BinStock.from_json) or state).qty == 8,
                           what="the updated bin state")
            # The node's events went through the broker before that update: none reached the integration.
            assert [m.topic for m in peer.messages if m.topic.endswith("/events")] == []
            # Read-only: no publishing as the hub, and no node topics under its own name either.
            assert peer.publish(bin_topic, b"{}") == NOT_AUTHORIZED
            assert peer.publish(f"wh/v1/{SITE}/{user}/events", b"{}") == NOT_AUTHORIZED
            assert peer.publish(f"wh/v1/{SITE}/{user}/state", b"{}") == NOT_AUTHORIZED
    # A new subscriber gets the current values at once: they are retained.
    late = connect_when_accepted(broker, user, password)
    try:
        late.subscribe(f"wh/v1/{SITE}/hub/bins/A-01-2")
        assert (await wait_for(lambda: _latest(late, bin_topic, BinStock.from_json), what="retained state")).qty == 8
    finally:
        late.close()
    assert remove_integration("andon", password_file=broker.password_file, acl_file=broker.acl_file,
                              mosquitto_pid_file=pid_file)
    assert refused_when_revoked(broker, user, password).is_failure
    assert "integration.andon" not in broker.acl_file.read_text()


async def test_without_the_rules_the_sku_state_does_not_count_quarantine(
        site_broker: tuple[PrivateBroker, Path], tmp_path: Path) -> None:
    broker, pid_file = site_broker
    user, password = add_integration("andon", password_file=broker.password_file, acl_file=broker.acl_file,
                                     mosquitto_pid_file=pid_file)
    async with RunningHub(broker, tmp_path, integrations=FAST, rules={"enabled": False}) as hub, \
            running_agent(broker, tmp_path) as agent:
        assert hub.service.rules is None
        peer = connect_when_accepted(broker, user, password)
        try:
            sku_topic = f"wh/v1/{SITE}/hub/skus/{GTIN}"
            peer.subscribe(sku_topic)
            # 2 returned into quarantine wait for inspection; the 5 on the shelf are all picked.
            for event in (scan(gtin=GTIN, location="A-01-2", qty=5, mode="receive"),
                          scan(gtin=GTIN, location="QUARANTINE", qty=2, mode="return", return_reason="DAMAGED"),
                          scan(gtin=GTIN, location="A-01-2", qty=5, mode="pick")):
                await agent.sink.submit(event)
            sku = await wait_for(lambda: next((s for s in (_latest(peer, sku_topic, SkuStock.from_json),)
                                               if s is not None and s.state == "stockout"), None),
                                 what="the SKU out of stock with 2 in quarantine")
            assert sku.on_hand == 0
            assert hub.balance("QUARANTINE") == 2  # on the ledger all the same
        finally:
            peer.close()


async def test_a_discrepancy_is_an_alert_and_changes_the_retained_counts(
        site_broker: tuple[PrivateBroker, Path], tmp_path: Path) -> None:
    broker, pid_file = site_broker
    user, password = add_integration("floor", password_file=broker.password_file, acl_file=broker.acl_file,
                                     mosquitto_pid_file=pid_file)
    async with RunningHub(broker, tmp_path, integrations=FAST, reconcile={"window_s": 0.5}) as hub, \
            running_agent(broker, tmp_path) as agent:
        with connect_when_accepted(broker, user, password) as peer:
            peer.subscribe(f"wh/v1/{SITE}/hub/#")
            row = await open_discrepancy(hub.service, agent.sink, "R-01-1")
            alerts_topic = f"wh/v1/{SITE}/hub/alerts"
            alerts = await wait_for(lambda: [HubAlert.from_json(m.payload) for m in _messages(peer, alerts_topic)],
                                    what="an alert")
            assert (alerts[0].kind, alerts[0].subject, alerts[0].text) == ("discrepancy", "R-01-1", row.sentence)
            assert not _messages(peer, alerts_topic)[0].retain  # an event, not a state
            counts = await wait_for(lambda: (c := _latest(peer, f"wh/v1/{SITE}/hub/discrepancies",
                                                          DiscrepancyCounts.from_json)) and c.open == 1 and c,
                                    what="one open discrepancy")
            assert counts.by_kind == {row.kind: 1}


def test_provisioning_keeps_acl_lines_it_did_not_write(site_broker: tuple[PrivateBroker, Path],
                                                      tmp_path: Path) -> None:
    broker, pid_file = site_broker
    # An operator's own account, added by hand before provisioning.
    own = "# Node-RED on the supervisor's PC, added by hand\nuser nodered\ntopic read wh/v1/+/hub/state\n"
    broker.acl_file.write_text(own + "\n" + acl_text())
    set_password(broker.password_file, "nodered", "nodered-secret")
    provision_node("pi-keep", password_file=broker.password_file, acl_file=broker.acl_file, out_dir=tmp_path / "n",
                   site=SITE, broker_host=broker.host, broker_port=broker.port, mosquitto_pid_file=pid_file)
    add_integration("dash", password_file=broker.password_file, acl_file=broker.acl_file, mosquitto_pid_file=pid_file)
    text = broker.acl_file.read_text()
    assert text.startswith(own) and text.count(ACL_BEGIN) == 1 and "user integration.dash" in text
    # And the hand-made account still works as its lines say.
    hub_peer = connect_when_accepted(broker, HUB_USER, broker.users[HUB_USER])
    peer = connect_when_accepted(broker, "nodered", "nodered-secret")
    try:
        hub_peer.client.publish(f"wh/v1/{SITE}/hub/state", b'{"online":true}', qos=1, retain=True)
        peer.subscribe(f"wh/v1/{SITE}/hub/state")
        assert asyncio.run(wait_for(lambda: _messages(peer, f"wh/v1/{SITE}/hub/state"), what="the hub state"))
    finally:
        peer.close()
        hub_peer.close()


def test_a_fully_generated_acl_of_an_earlier_release_is_replaced_not_kept(tmp_path: Path) -> None:
    from hub.provision import ensure_acl

    legacy = tmp_path / "acl"
    legacy.write_text(f"{LEGACY_ACL_HEADER}\nuser hub\ntopic readwrite wh/v1/#\n")
    assert ensure_acl(legacy)
    assert legacy.read_text() == acl_text()
    assert not ensure_acl(legacy)  # idempotent


async def test_a_shelf_fault_shows_in_the_bin_state_and_is_an_alert(
        site_broker: tuple[PrivateBroker, Path], tmp_path: Path) -> None:
    import time

    from contract import ShelfFault

    broker, pid_file = site_broker
    user, password = add_integration("faults", password_file=broker.password_file, acl_file=broker.acl_file,
                                     mosquitto_pid_file=pid_file)
    async with RunningHub(broker, tmp_path, integrations=FAST), running_agent(broker, tmp_path) as agent:
        with connect_when_accepted(broker, user, password) as peer:
            peer.subscribe(f"wh/v1/{SITE}/hub/#")
            now = int(time.time() * 1000)
            await agent.sink.submit(ShelfFault(seq=0, ts_ms=now, accepted_ms=now, bin="S-01-1", fault="overload",
                                               detail="load above the cell's range"))
            bin_topic = f"wh/v1/{SITE}/hub/bins/S-01-1"
            state = await wait_for(lambda: _latest(peer, bin_topic, BinStock.from_json), what="the bin's state")
            assert state.fault == "overload"
            alerts = await wait_for(lambda: [HubAlert.from_json(m.payload)
                                             for m in _messages(peer, f"wh/v1/{SITE}/hub/alerts")], what="an alert")
            assert [(a.kind, a.subject) for a in alerts] == [("shelf_fault", "S-01-1")]
            await agent.sink.submit(ShelfFault(seq=0, ts_ms=now + 1, accepted_ms=now + 1, bin="S-01-1",
                                               fault="overload", detail="", active=False))
            cleared = await wait_for(lambda: (s := _latest(peer, bin_topic, BinStock.from_json)) and s.fault is None
                                     and s, what="the fault cleared in the bin's state")
            assert cleared.fault is None


def test_the_integration_commands_print_the_account_once_and_end_it(
        site_broker: tuple[PrivateBroker, Path], capsys: Any) -> None:
    import argparse

    from hub.provision import add_subcommands

    broker, pid_file = site_broker
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    files = ["--password-file", str(broker.password_file), "--acl-file", str(broker.acl_file),
             "--mosquitto-pid-file", str(pid_file)]
    args = parser.parse_args(["add-integration", "wall", *files])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    password = printed.split("settings): ", 1)[1].split("\n", 1)[0]
    assert "MQTT username integration.wall" in printed
    connect_when_accepted(broker, "integration.wall", password).close()
    args = parser.parse_args(["add-integration", "Not Valid", *files])
    assert args.func(args) == 1 and "stock-hub add-integration Not Valid:" in capsys.readouterr().out
    args = parser.parse_args(["remove-integration", "wall", *files])
    assert args.func(args) == 0 and capsys.readouterr().out == "integration wall removed\n"
    assert args.func(args) == 0 and capsys.readouterr().out == "integration wall did not exist\n"
