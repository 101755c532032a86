"""`edge-agent doctor`: one bring-up check an installer runs on a Pi, green or red line by line.

Checks, in order: the config; each configured scanner and shelf (present, usable by the
service user, answering where the protocol allows); the broker (reachable, these
credentials, TLS, the ACL for this node's topics); the clock (a Pi has no real-time clock);
the SD card (free space, write speed); the outbox (depth, oldest event); each bin's last
calibration. Every red line carries the fix. The result is kept in the state directory
(`doctor-report.json`) and the agent sends it on its next birth (`notices`), so the hub
hears it when the agent (re)connects.

The write-ACL check publishes, not retained, this node's state as it is (online when a
process holds the outbox open, i.e. the agent runs): the one message of ours the hub takes
as news without acting on it; the broker's PUBACK reason code is the answer.

Run it as root (`sudo edge-agent doctor`): it reads the root-only MQTT password file and
judges device access for the service user, not for whoever runs it.
"""

from __future__ import annotations

import ctypes
import grp
import json
import os
import pwd
import secrets
import shutil
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from contract import Channel, HubState, NodeState, hub_state_topic, node_topic
from contract.clock import now_ms
from edge.config import EdgeConfig, load_edge_config
from settings import ConfigError

SERVICE_USER = "edge-agent"  # systemd/edge-agent.service User=
SHELF_ANSWER_TIMEOUT_S = 3.0  # a controller streams at 10 or 80 Hz and says hello on `?`
BROKER_TIMEOUT_S = 5.0
RETAINED_WAIT_S = 2.0  # retained messages arrive right after the SUBACK; this is generous
MIN_FREE_BYTES = 200 * 1024 * 1024  # below this, a week of outage (outbox growth) may not fit
WRITE_PROBE_BYTES = 4 * 1024 * 1024
MIN_WRITE_BYTES_PER_S = 1 * 1024 * 1024  # a worn or fake card falls far below a class-10's 10 MB/s
OUTBOX_STALE_S = 300.0  # older unacknowledged events mean the hub has not been reached for a while
ADJTIMEX_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: green when `ok`; a red line says how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


# --------------------------------------------------------------------------- devices


def _user_groups(user: str) -> tuple[int, set[int]] | None:
    """(uid, gids) of the service user; None when the user does not exist (then: who runs this)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, set(os.getgrouplist(user, entry.pw_gid))


def _can_read_write(path: Path, user: str) -> tuple[bool, str]:
    """Whether `user` may open the device read-write, judged from its mode, owner and group."""
    ids = _user_groups(user)
    if ids is None:
        return os.access(path, os.R_OK | os.W_OK), f"as {pwd.getpwuid(os.getuid()).pw_name} (no user {user} here)"
    uid, gids = ids
    st = path.stat()
    mode = st.st_mode
    if uid == 0:
        allowed = True
    elif st.st_uid == uid:
        allowed = bool(mode & stat.S_IRUSR and mode & stat.S_IWUSR)
    elif st.st_gid in gids:
        allowed = bool(mode & stat.S_IRGRP and mode & stat.S_IWGRP)
    else:
        allowed = bool(mode & stat.S_IROTH and mode & stat.S_IWOTH)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return allowed, f"as {user} (device group {group}, mode {stat.filemode(mode)})"


def _holders(path: Path) -> list[int]:
    """Pids (other than ours) with the device open: reading it too would steal their data."""
    # The same inode, not the same name: another container's /dev/pts/0 is a different device.
    target = os.stat(path)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                st = os.stat(fd)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                pids.append(int(entry.name))
                break
    return pids


def _device_checks(kind: str, name: str, port: str, user: str) -> tuple[list[Check], bool]:
    """Present and usable by the service user; returns the checks and whether it may be opened now."""
    label = f"{kind} {name}"
    if not port:
        return [Check(label, False, "no port configured", f"set port in its [[{kind}]] table")], False
    path = Path(port)
    if not path.exists():
        return [Check(label, False, f"{port} does not exist",
                      "plug it in; `edge-agent devices` lists what is attached; a /dev/shelfsignal/ name "
                      "needs its rule in /etc/udev/rules.d/99-shelfsignal.rules (docs/deployment.md)")], False
    allowed, how = _can_read_write(path, user)
    real = os.path.realpath(path)
    if not allowed:
        group = "input" if real.startswith("/dev/input/") else "dialout"
        return [Check(label, False, f"{port} -> {real} not readable and writable {how}",
                      f"sudo usermod -aG {group} {user}, or give the device that group in the udev rule "
                      "(firmware_config/udev/99-shelfsignal.rules)")], False
    holders = _holders(path)
    if holders:
        return [Check(label, True, f"{port} -> {real}, usable {how}; held by pid {', '.join(map(str, holders))} "
                                   "(the running agent?), so not read here")], False
    return [Check(label, True, f"{port} -> {real}, usable {how}")], True


def _scanner_identity(table: dict[str, Any]) -> Check:
    name, port = table.get("name", "scanner"), table.get("port", "")
    label = f"scanner {name} identity"
    if table.get("type") != "evdev":
        return Check(label, True, "serial scanner: its protocol has no identity query; scan a "
                                              "barcode with `edge-agent watch-scans` to see it answer")
    try:
        import evdev
        device = evdev.InputDevice(port)
        identity = f"{device.name} (usb {device.info.vendor:04x}:{device.info.product:04x})"
        device.close()
    except (ImportError, OSError) as err:
        return Check(label, False, f"cannot read its identity ({err})", "check the cable; replug it")
    return Check(label, True, f"answers: {identity}")


def _shelf_answer(table: dict[str, Any]) -> list[Check]:
    """Open the controller, say hello, decode what it sends for a few seconds."""
    import serial

    from edge.shelf.protocols import PROTOCOLS
    from edge.shelf.protocols.base import DISCONNECTED, GarbageLine
    name, port, bins = table["name"], table["port"], [str(b) for b in table.get("bins", [])]
    protocol = PROTOCOLS[table.get("protocol", "hx711-bridge")](len(bins))
    label = f"shelf {name} reading"
    try:
        ser = serial.Serial(port, int(table.get("baud", 115200)), timeout=0.2)
    except (serial.SerialException, OSError) as err:
        return [Check(label, False, f"cannot open {port} ({err})", "replug the controller; check its USB cable")]
    hello, samples, garbage = "", None, 0
    deadline = time.monotonic() + SHELF_ANSWER_TIMEOUT_S
    try:
        for command in protocol.open_commands(10.0):
            ser.write(command)
        buf = b""
        while time.monotonic() < deadline and not (samples is not None and (hello or protocol.name != "hx711-bridge")):
            buf += ser.read(max(1, ser.in_waiting))
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    frame = protocol.decode(line.rstrip(b"\r"))
                except GarbageLine:
                    garbage += 1
                    continue
                if frame.kind == "hello":
                    hello = frame.text
                elif frame.kind == "data" and frame.samples is not None:
                    samples = frame.samples
    except (serial.SerialException, OSError) as err:
        return [Check(label, False, f"{port}: read failed ({err})", "replug the controller")]
    finally:
        ser.close()
    if samples is None:
        return [Check(label, False, f"{port}: no readings in {SHELF_ANSWER_TIMEOUT_S:.0f} s"
                                    + (f" ({garbage} unreadable line(s): wrong baud rate?)" if garbage else ""),
                      f"check baud (configured {table.get('baud', 115200)}) and protocol; power-cycle the "
                      "controller")]
    checks = [Check(label, True, f"answers: {hello or protocol.name}; raw "
                                 + ", ".join(f"{b}={s}" for b, s in zip(bins, samples, strict=False)))]
    for bin_name, sample in zip(bins, samples, strict=False):
        if sample == DISCONNECTED:
            checks.append(Check(f"bin {bin_name}", False, f"load cell on shelf {name} disconnected",
                                "check the load cell's connector and wires at the HX711 board"))
    return checks


def check_devices(config: EdgeConfig, user: str) -> Iterator[Check]:
    """Each configured scanner and shelf: present, usable by `user`, answering."""
    for table in config.scanners:
        checks, free = _device_checks("scanner", table.get("name", "scanner"), table.get("port", ""), user)
        yield from checks
        if free and checks[0].ok:
            yield _scanner_identity(table)
    for table in config.shelves:
        checks, free = _device_checks("shelf", table["name"], table.get("port", ""), user)
        yield from checks
        if free and checks[0].ok:
            yield from _shelf_answer(table)


# --------------------------------------------------------------------------- broker


class _BrokerProbe:
    """A short MQTT v5 session as this node (another client id, so the agent is not kicked off)."""

    def __init__(self, config: EdgeConfig) -> None:
        from mqtt_client import make_client
        self.config = config
        self.connected = threading.Event()
        self.connack: Any = None
        self.retained: dict[str, bytes] = {}
        self.puback: dict[int, Any] = {}
        self.acked = threading.Condition()
        self.client = make_client(config.mqtt, client_id=f"{config.node}-doctor-{secrets.token_hex(2)}")
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.retained.__setitem__(m.topic, bytes(m.payload))
        self.client.on_publish = self._on_publish

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.connack = rc
        self.connected.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any = None) -> None:
        with self.acked:
            self.puback[mid] = rc
            self.acked.notify_all()

    def connect(self) -> Check:
        cfg = self.config.mqtt
        where = f"{cfg.host}:{cfg.port}{' (TLS)' if cfg.tls else ''} as {cfg.username}"
        try:
            self.client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        except OSError as err:
            fix = ("check the CA file (mqtt.ca_file) and that the broker's certificate names this host"
                   if "CERTIFICATE" in str(err).upper() or "SSL" in type(err).__name__.upper()
                   else "check mqtt.host and mqtt.port, the network, and that Mosquitto runs on the hub")
            return Check("broker", False, f"{where}: cannot connect ({err})", fix)
        self.client.loop_start()
        if not self.connected.wait(BROKER_TIMEOUT_S):
            return Check("broker", False, f"{where}: no answer in {BROKER_TIMEOUT_S:.0f} s",
                         "a TLS port spoken to without mqtt.tls (or the reverse)? check mqtt.port and mqtt.tls")
        if self.connack.is_failure:
            fix = ("the password does not match the broker's: put the `password =` value of the node file "
                   "`stock-hub provision-node` wrote into /etc/edge-agent/mqtt-password, restart the agent"
                   if self.connack.value in (134, 135) else "see the broker's log")
            return Check("broker", False, f"{where}: refused: {self.connack} ({self.connack.value})", fix)
        return Check("broker", True, f"{where}: connected (MQTT v5)")

    def read_hub_state(self) -> Check:
        topic = hub_state_topic(self.config.site)
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + RETAINED_WAIT_S
        while topic not in self.retained and time.monotonic() < deadline:
            time.sleep(0.05)
        if topic not in self.retained:
            return Check("broker: read", False, f"no retained hub state on {topic}",
                         "the hub has never connected to this broker (start stock-hub), or the ACL lacks "
                         "`pattern read wh/v1/+/hub/state` (re-run stock-hub provision-node)")
        try:
            state = HubState.from_json(self.retained[topic])
        except Exception as err:  # noqa: BLE001 - any unreadable payload is the finding
            return Check("broker: read", False, f"{topic}: unreadable ({err})", "upgrade the agent to the hub's version")
        return Check("broker: read", True, f"the hub's state is readable here: hub {'online' if state.online else 'OFFLINE'}")

    def publish_state(self, agent_running: bool) -> Check:
        """Publish this node's true state, not retained; the PUBACK reason code is the write ACL's answer."""
        topic = node_topic(self.config.site, self.config.node, Channel.STATE)
        state = NodeState(node=self.config.node, online=agent_running, boot_id=f"doctor-{secrets.token_hex(4)}",
                          ts_ms=now_ms())
        info = self.client.publish(topic, state.to_json(), qos=1, retain=False)
        with self.acked:
            self.acked.wait_for(lambda: info.mid in self.puback, BROKER_TIMEOUT_S)
        rc = self.puback.get(info.mid)
        if rc is None:
            return Check("broker: publish", False, f"{topic}: no PUBACK in {BROKER_TIMEOUT_S:.0f} s", "see the broker's log")
        if rc.is_failure:
            return Check("broker: publish", False, f"{topic}: refused: {rc} ({rc.value})",
                         f"the ACL must let user {self.config.mqtt.username} write wh/v1/+/%u/... and node.name "
                         f"({self.config.node}) must equal the MQTT username")
        return Check("broker: publish", True, f"{topic}: accepted (this node's topics are writable)")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- the Pi itself


def _adjtimex_state() -> int | None:
    """The kernel clock state from adjtimex(2) with no changes; TIME_ERROR means unsynchronised."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex is 208 bytes on 64-bit; modes=0 reads only
        return int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None


def ntp_synchronized() -> tuple[bool | None, str]:
    """(synchronised?, how it was found out); None when nothing could tell."""
    if shutil.which("timedatectl"):
        out = subprocess.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
            return out.stdout.strip() == "yes", "timedatectl"
    state = _adjtimex_state()
    if state is None or state < 0:
        return None, "adjtimex unavailable"
    return state != ADJTIMEX_TIME_ERROR, "adjtimex"


def check_clock(synchronized: Callable[[], tuple[bool | None, str]] = ntp_synchronized) -> Check:
    """A Pi has no real-time clock: until NTP syncs, event times may be off by days."""
    synced, how = synchronized()
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if synced:
        return Check("clock", True, f"{now}, synchronised ({how})")
    return Check("clock", False, f"{now}, {'NOT synchronised' if synced is False else 'sync state unknown'} ({how})",
                 "check `timedatectl timesync-status` and that the NTP server (often the hub or router) "
                 "is reachable; events carry this clock's times")


def check_storage(state_dir: Path) -> list[Check]:
    """Free space and sustained write speed (fsynced) of the card that holds the outbox."""
    target = state_dir if state_dir.exists() else state_dir.parent
    usage = shutil.disk_usage(target)
    checks = [Check("storage: free", usage.free >= MIN_FREE_BYTES,
                    f"{usage.free / 2**20:.0f} MiB free of {usage.total / 2**20:.0f} MiB on {target}",
                    "free space: old logs (journalctl --vacuum-size=50M), or a bigger card")]
    probe = target / f".doctor-write-probe-{secrets.token_hex(3)}"
    try:
        block = os.urandom(256 * 1024)
        start = time.perf_counter()
        with open(probe, "wb") as handle:
            for _ in range(WRITE_PROBE_BYTES // len(block)):
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        elapsed_s = time.perf_counter() - start
    except OSError as err:
        checks.append(Check("storage: write", False, f"cannot write in {target} ({err})",
                            "the card may be read-only (worn out): replace it"))
        return checks
    finally:
        probe.unlink(missing_ok=True)
    speed = WRITE_PROBE_BYTES / max(elapsed_s, 1e-9)
    checks.append(Check("storage: write", speed >= MIN_WRITE_BYTES_PER_S,
                        f"{speed / 2**20:.1f} MiB/s sustained (4 MiB, fsynced)",
                        "a card this slow is worn or counterfeit: replace it with an industrial or "
                        "high-endurance card"))
    return checks


def check_outbox(path: Path, at_ms: int | None = None) -> Check:
    """How many events wait for the hub's ack, and since when (read-only: the agent may run)."""
    if not path.exists():
        return Check("outbox", True, f"{path}: not created yet (the agent creates it on first start)")
    at_ms = at_ms if at_ms is not None else now_ms()
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            depth = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            row = db.execute("SELECT body FROM outbox ORDER BY seq LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error as err:
        return Check("outbox", False, f"{path}: unreadable ({err})", "run as root (sudo edge-agent doctor)")
    if depth == 0:
        return Check("outbox", True, "empty: the hub has acknowledged every event")
    oldest_ms = int(json.loads(row[0]).get("accepted_ms", at_ms))
    age_s = (at_ms - oldest_ms) / 1000
    detail = f"{depth} event(s) waiting for the hub's ack, oldest accepted {age_s:.0f} s ago"
    return Check("outbox", age_s <= OUTBOX_STALE_S, detail,
                 "events are safe here but the hub has not acknowledged them: see the broker lines above; "
                 "they are sent as soon as the hub is reached")


def check_calibrations(config: EdgeConfig) -> list[Check]:
    """Each shelf bin's last calibration, and how the state file was loaded."""
    from edge.shelf.calibration import Calibration
    from edge.state import EdgeState
    checks = []
    try:
        state = EdgeState(config.state_path, read_only=True)
    except OSError as err:
        return [Check("state", False, f"{config.state_path}: unreadable ({err})", "run as root")]
    try:
        for notice in state.notices:
            checks.append(Check("state", False, notice, "recalibrate what was lost (edge-agent calibrate); "
                                                        "the agent rewrites the file at its next start"))
        for table in config.shelves:
            for bin_name in table.get("bins", []):
                doc = state.bin_calibration(str(bin_name))
                cal = Calibration.from_doc(doc) if doc is not None else None
                if cal is None or not cal.calibrated:
                    checks.append(Check(f"bin {bin_name}", False, "never calibrated on this node",
                                        f"sudo edge-agent calibrate --config {config.source} --bin {bin_name} "
                                        "zero, then calibrate --known-weight-g ..."))
                    continue
                when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(cal.changed_ms / 1000))
                checks.append(Check(f"bin {bin_name}", True, f"calibrated, last change {when} "
                                                             f"(scale {cal.scale_per_g:g}/g, tare {cal.tare_g:.1f} g)"))
    finally:
        state.close()
    return checks


# --------------------------------------------------------------------------- the report


def run_doctor(config_path: str, out: TextIO, user: str = SERVICE_USER, save: bool = True,
               clock: Callable[[], tuple[bool | None, str]] = ntp_synchronized) -> int:
    """Run every check, print green/red lines with fixes; 0 when all green, 1 otherwise."""
    checks: list[Check] = []

    def emit(check: Check) -> None:
        checks.append(check)
        out.write(f"{'  ok ' if check.ok else ' FAIL'}  {check.name}: {check.detail}\n")
        if not check.ok and check.fix:
            out.write(f"       fix: {check.fix}\n")
        out.flush()

    try:
        config = load_edge_config(config_path)
    except ConfigError as err:
        emit(Check("config", False, str(err), "edit the file; `edge-agent config-help` lists every key"))
        return 1
    emit(Check("config", True, f"{config_path}: node {config.node}, site {config.site}, "
                               f"{len(config.scanners)} scanner(s), {len(config.shelves)} shelf controller(s)"))
    for check in check_devices(config, user):
        emit(check)
    probe = _BrokerProbe(config)
    try:
        connected = probe.connect()
        emit(connected)
        if connected.ok:
            emit(probe.read_hub_state())
        emit(check_clock(clock))
        for check in check_storage(config.outbox_path.parent):
            emit(check)
        emit(check_outbox(config.outbox_path))
        for check in check_calibrations(config):
            emit(check)
        if connected.ok:
            holders = _holders(config.outbox_path) if config.outbox_path.exists() else []
            if holders or os.getuid() == 0:
                emit(probe.publish_state(agent_running=bool(holders)))
            else:  # another user's agent is invisible here: a wrong "offline" must not reach the hub
                emit(Check("broker: publish", False, "not checked: cannot tell whether the agent runs",
                           "run it as root: sudo edge-agent doctor"))
    finally:
        probe.close()
    red = [c for c in checks if not c.ok]
    out.write(f"\n{len(checks) - len(red)} ok, {len(red)} to fix\n" if red else f"\nall {len(checks)} checks ok\n")
    if save:
        try:
            path = save_report(config.state_path.parent, checks)
            out.write(f"saved in {path}: the agent sends it to the hub on its next start "
                      "(sudo systemctl restart edge-agent)\n")
        except OSError as err:
            out.write(f"could not save the report in {config.state_path.parent} ({err})\n")
    return 1 if red else 0


REPORT_NAME = "doctor-report.json"  # in the state directory, read by the agent for its birth


def save_report(state_dir: Path, checks: list[Check]) -> Path:
    """Keep the result where the agent finds it (durably: a power cut leaves the old or the new)."""
    from edge.state import write_file_durably
    red = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    doc = {"ts_ms": now_ms(), "checks": len(checks), "red": red}
    path = state_dir / REPORT_NAME
    state_dir.mkdir(parents=True, exist_ok=True)
    write_file_durably(path, json.dumps(doc, indent=1).encode())
    if os.getuid() == 0:  # run with sudo: the file belongs to the agent, like the directory
        st = state_dir.stat()
        os.chown(path, st.st_uid, st.st_gid)
    return path


def report_notice(state_dir: Path) -> str | None:
    """The last doctor run in one sentence, for the node's birth; None if it never ran here."""
    try:
        doc = json.loads((state_dir / REPORT_NAME).read_text())
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(doc["ts_ms"]) / 1000))
        red = [str(r) for r in doc["red"]]
        total = int(doc["checks"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not red:  # the hub shows this one as green (contract.notice_is_all_clear), every other notice red
        return f"edge-agent doctor {when}: all {total} checks ok"
    return f"edge-agent doctor {when}: {len(red)} of {total} to fix: " + "; ".join(red)
