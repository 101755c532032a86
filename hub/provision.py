"""Provisioning a node: its MQTT credentials, the broker's password file and ACL, its config file.

`stock-hub provision-node NAME` and `stock-hub revoke-node NAME`. The ACL needs no per-node
entry: its `%u` patterns give every user rights to its own topics only, so provisioning
regenerates its own marked block of the ACL (hub/mosquitto.py; lines outside it are an
operator's and are kept) and adds a password. `stock-hub add-integration NAME` adds a
read-only account for other consumers of the hub's published state.

The node's config file carries its password inline (`mqtt.password`), file mode 0600: the file
is the one thing an installer copies to the Pi (`install-edge.sh --config FILE` installs it as
root:edge-agent 0640), so a second secret file whose path must match on the Pi would only add
a way to get it wrong. Keep provisioned files out of version control.

Both commands are idempotent. Provisioning again keeps the password already in the node's
config file (a Pi in the field keeps working); to rotate it, revoke and provision again.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from contract import check_name, check_node_name
from hub.mosquitto import HUB_USER, delete_user, integration_user, merged_acl, set_password, split_acl

log = logging.getLogger(__name__)
T = TypeVar("T")

# Paths that scripts/install-hub.sh creates; the CLI defaults to them.
DEFAULT_PASSWORD_FILE = Path("/etc/mosquitto/shelfsignal/passwd")
DEFAULT_ACL_FILE = Path("/etc/mosquitto/shelfsignal/acl")
DEFAULT_OUT_DIR = Path("firmware_config/nodes")
DEFAULT_RELOAD_COMMAND = ("systemctl", "reload", "mosquitto")
# 32 random bytes as URL-safe text: 256 bits, no characters that need quoting in TOML or shells.
PASSWORD_BYTES = 32


class ProvisionError(Exception):
    """Provisioning could not be done; the text says what and what to do."""


def node_config_path(out_dir: Path, name: str) -> Path:
    """Where a node's config file is written."""
    return out_dir / f"{name}.toml"


def provision_node(name: str, *, password_file: Path, acl_file: Path, out_dir: Path, site: str,
                   broker_host: str, broker_port: int, reload: bool = True, tls: bool = False,
                   ca_file: str = "", mosquitto_pid_file: Path | None = None,
                   reload_command: Sequence[str] = DEFAULT_RELOAD_COMMAND) -> Path:
    """Create or confirm a node's credentials, ACL and config file; returns the config file's path."""
    check_node_name(name)
    check_name("site", site)
    config_path = node_config_path(out_dir, name)
    with _locked(password_file):
        password = _existing_password(config_path, name)
        if password is None:
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_private(config_path, edge_config_text(name, site=site, password=password, broker_host=broker_host,
                                                         broker_port=broker_port, tls=tls, ca_file=ca_file))
            log.info("node %s: new password, config written to %s", name, config_path)
        else:
            log.info("node %s: keeping the password in %s (revoke and provision again to rotate it)",
                     name, config_path)
        # Always (re)set it: the password file may have been restored from an older backup.
        with _keep_mode(password_file):
            set_password(password_file, name, password)
        ensure_acl(acl_file)
    if reload:
        reload_mosquitto(mosquitto_pid_file, reload_command)
    return config_path


def revoke_node(name: str, *, password_file: Path, out_dir: Path, reload: bool = True,
                mosquitto_pid_file: Path | None = None,
                reload_command: Sequence[str] = DEFAULT_RELOAD_COMMAND) -> bool:
    """Remove a node's credentials and its config file; True if there was anything to remove."""
    check_node_name(name)
    config_path = node_config_path(out_dir, name)
    with _locked(password_file):
        had_user = _has_user(password_file, name)
        with _keep_mode(password_file):
            delete_user(password_file, name)
        had_config = config_path.exists()
        config_path.unlink(missing_ok=True)
    if reload:
        # Mosquitto re-checks connected clients on reload and disconnects this one.
        reload_mosquitto(mosquitto_pid_file, reload_command)
    log.info("node %s: revoked (user %s, config file %s)", name,
             "removed" if had_user else "was absent", "removed" if had_config else "was absent")
    return had_user or had_config


def ensure_acl(acl_file: Path, hub_user: str = HUB_USER, integrations: tuple[str, ...] | None = None) -> bool:
    """Regenerate our block of the ACL, keeping every line outside it (an operator's own accounts)
    and, unless `integrations` is given, the integration accounts it lists; True if the file changed."""
    existing = acl_file.read_text() if acl_file.exists() else ""
    want = merged_acl(existing, hub_user, integrations)
    if acl_file.exists() and existing == want:
        return False
    acl_file.parent.mkdir(parents=True, exist_ok=True)
    with _keep_mode(acl_file):
        tmp = acl_file.with_name(acl_file.name + ".tmp")
        tmp.write_text(want)
        os.replace(tmp, acl_file)  # mosquitto never reads a half-written ACL
    log.info("wrote the site ACL to %s", acl_file)
    return True


def add_integration(name: str, *, password_file: Path, acl_file: Path, reload: bool = True,
                    mosquitto_pid_file: Path | None = None,
                    reload_command: Sequence[str] = DEFAULT_RELOAD_COMMAND) -> tuple[str, str]:
    """A read-only MQTT account for another consumer (dashboard, Node-RED): a new password each
    time (so this also rotates it); returns (username, password). It may read the hub's published
    state (contract/outbound.py) and nothing else, and can never publish as a node."""
    check_name("integration", name)
    user = integration_user(name)
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    with _locked(password_file):
        with _keep_mode(password_file):
            set_password(password_file, user, password)
        _, integrations = split_acl(acl_file.read_text() if acl_file.exists() else "")
        ensure_acl(acl_file, integrations=(*integrations, name))
    if reload:
        reload_mosquitto(mosquitto_pid_file, reload_command)
    log.info("integration %s: account %s written to %s and %s", name, user, password_file, acl_file)
    return user, password


def remove_integration(name: str, *, password_file: Path, acl_file: Path, reload: bool = True,
                       mosquitto_pid_file: Path | None = None,
                       reload_command: Sequence[str] = DEFAULT_RELOAD_COMMAND) -> bool:
    """Remove an integration account and its ACL lines; True if there was anything to remove."""
    check_name("integration", name)
    user = integration_user(name)
    with _locked(password_file):
        had_user = _has_user(password_file, user)
        with _keep_mode(password_file):
            delete_user(password_file, user)
        _, integrations = split_acl(acl_file.read_text() if acl_file.exists() else "")
        ensure_acl(acl_file, integrations=tuple(i for i in integrations if i != name))
    if reload:
        reload_mosquitto(mosquitto_pid_file, reload_command)
    return had_user or name in integrations


def reload_mosquitto(pid_file: Path | None = None,
                     command: Sequence[str] = DEFAULT_RELOAD_COMMAND) -> None:
    """Make Mosquitto re-read its password file and ACL: SIGHUP to the pid in pid_file, else run command."""
    if pid_file is not None:
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as err:
            raise ProvisionError(f"cannot signal mosquitto from pid file {pid_file}: {err}; "
                                 "is it running? The files are written; reload it by hand") from None
        log.info("sent SIGHUP to mosquitto (pid %d)", pid)
        return
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    except OSError as err:  # no systemctl (a container, a chroot): say what to do, as for a failure
        raise ProvisionError(f"cannot run '{' '.join(command)}' ({err.strerror}); the files are written; reload "
                             "mosquitto by hand, or pass --mosquitto-pid-file") from None
    if result.returncode != 0:
        raise ProvisionError(f"'{' '.join(command)}' failed ({result.stderr.strip() or result.returncode}); "
                             "the files are written; reload mosquitto by hand")
    log.info("reloaded mosquitto with '%s'", " ".join(command))


def edge_config_text(name: str, *, site: str, password: str, broker_host: str, broker_port: int,
                     tls: bool = False, ca_file: str = "") -> str:
    """An edge config file for a new node, using the keys of edge.config.EDGE_SETTINGS."""
    tls_lines = f'tls = true\nca_file = "{_toml_escape(ca_file)}"\n' if tls else "tls = false\n"
    return f"""# Edge agent config for node '{name}' at site '{site}', written by 'stock-hub provision-node'.
# It holds the node's MQTT password: copy it to the Pi with
#   sudo scripts/install-edge.sh --config {name}.toml   (installs /etc/edge-agent/edge.toml, root:edge-agent 0640)
# and do not commit it. Devices use the stable names from firmware_config/udev/99-shelfsignal.rules.

[node]
name = "{name}"
site = "{site}"

[mqtt]
host = "{_toml_escape(broker_host)}"
port = {broker_port}
password = "{password}"
{tls_lines}
[outbox]
path = "/var/lib/edge-agent/outbox.sqlite3"

[state]
path = "/var/lib/edge-agent/state.json"

# Uncomment and adapt one table per device (`edge-agent devices` lists what is attached).
# [[scanner]]
# name = "scanner-1"
# type = "evdev"
# port = "/dev/shelfsignal/scanner-1"
#
# [[shelf]]
# name = "shelf-a"
# protocol = "hx711-bridge"
# port = "/dev/shelfsignal/shelf-a"
# baud = 115200
# bins = ["A-01-1", "A-01-2"]
"""


def _toml_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _existing_password(config_path: Path, name: str) -> str | None:
    """The password in a node's existing config file, or None when there is no file."""
    if not config_path.exists():
        return None
    try:
        with open(config_path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ProvisionError(f"{config_path}: not valid TOML ({err}); fix it, or delete it to start over") from None
    node = doc.get("node", {}).get("name")
    password = doc.get("mqtt", {}).get("password")
    if node != name or not isinstance(password, str) or not password:
        raise ProvisionError(f"{config_path}: exists but is not node {name!r}'s config with an mqtt.password; "
                             "move it away or choose another --out-dir")
    return password


def _has_user(password_file: Path, name: str) -> bool:
    if not password_file.exists():
        return False
    return any(line.split(":", 1)[0] == name for line in password_file.read_text().splitlines())


def _write_private(path: Path, text: str) -> None:
    """Write a secret-bearing file as 0600 from the first byte, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _keep_mode(path: Path) -> Iterator[None]:
    """Restore a file's mode and group after a tool rewrote it (mosquitto must still read it)."""
    before = path.stat() if path.exists() else None
    yield
    if before is not None and path.exists():
        os.chmod(path, before.st_mode & 0o7777)
        with contextlib.suppress(PermissionError):
            os.chown(path, before.st_uid, before.st_gid)


@contextlib.contextmanager
def _locked(password_file: Path) -> Iterator[None]:
    """One provisioning at a time per password file (two admins, or a script in a loop)."""
    password_file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = password_file.with_name(password_file.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- command line -----------------------------------------------------------------------------


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `provision-node`, `revoke-node`, `add-integration` and `remove-integration`."""
    prov = subparsers.add_parser("provision-node", help="create a node's MQTT credentials and its config file",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    prov.add_argument("name", help="node name: lowercase letters, digits, '-', at most 32; 'hub' is reserved")
    prov.add_argument("--site", required=True, help="the site name (as in the hub config)")
    prov.add_argument("--broker-host", default=socket.getfqdn(),
                      help="broker address as the Pi will reach it (default: this machine's name)")
    prov.add_argument("--broker-port", type=int, default=1883, help="broker port (8883 with --tls)")
    prov.add_argument("--tls", action="store_true", help="the node connects with TLS")
    prov.add_argument("--ca-file", default="", help="with --tls: CA certificate path on the Pi")
    _common_arguments(prov)
    prov.set_defaults(func=_cmd_provision)

    rev = subparsers.add_parser("revoke-node", help="remove a node's MQTT credentials and config file")
    rev.add_argument("name", help="node name")
    _common_arguments(rev)
    rev.set_defaults(func=_cmd_revoke)


    add = subparsers.add_parser(
        "add-integration", help="create (or give a new password to) a read-only MQTT account for other consumers",
        description="A read-only MQTT account for a dashboard, Node-RED flow or andon light: it may subscribe to "
                    "the stock state the hub publishes under wh/v1/{site}/hub/ (bins, skus, discrepancies, alerts, "
                    "state) and nothing else. Prints the username and a new password once.")
    add.add_argument("name", help="integration name: lowercase letters, digits, '-', at most 32")
    _broker_file_arguments(add)
    add.set_defaults(func=_cmd_add_integration)

    remove = subparsers.add_parser("remove-integration", help="remove an integration's MQTT account")
    remove.add_argument("name", help="integration name")
    _broker_file_arguments(remove)
    remove.set_defaults(func=_cmd_remove_integration)


def _broker_file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-file", type=Path, default=DEFAULT_PASSWORD_FILE,
                        help=f"Mosquitto password file (default {DEFAULT_PASSWORD_FILE})")
    parser.add_argument("--acl-file", type=Path, default=DEFAULT_ACL_FILE,
                        help=f"Mosquitto ACL file (default {DEFAULT_ACL_FILE})")
    parser.add_argument("--mosquitto-pid-file", type=Path, default=None,
                        help="reload by SIGHUP to the pid in this file instead of 'systemctl reload mosquitto'")
    parser.add_argument("--no-reload", action="store_true", help="write the files but do not reload mosquitto")


def _cmd_add_integration(args: argparse.Namespace) -> int:
    return _cli("add-integration", args.name, lambda: add_integration(
        args.name, password_file=args.password_file, acl_file=args.acl_file, reload=not args.no_reload,
        mosquitto_pid_file=args.mosquitto_pid_file),
        lambda made: f"integration {args.name}: MQTT username {made[0]}\npassword (shown once; store it in the "
                     f"integration's settings): {made[1]}\nit may subscribe to wh/v1/<site>/hub/# state topics "
                     "(docs/asyncapi.yaml)")


def _cmd_remove_integration(args: argparse.Namespace) -> int:
    return _cli("remove-integration", args.name, lambda: remove_integration(
        args.name, password_file=args.password_file, acl_file=args.acl_file, reload=not args.no_reload,
        mosquitto_pid_file=args.mosquitto_pid_file),
        lambda removed: f"integration {args.name} removed" if removed else f"integration {args.name} did not exist")


def _cli(command: str, name: str, action: Callable[[], T], success: Callable[[T], str]) -> int:
    """Run one provisioning command: its result as a sentence, or the error as one line and exit 1."""
    try:
        result = action()
    except (ValueError, ProvisionError, OSError, subprocess.CalledProcessError) as err:
        print(f"stock-hub {command} {name}: {err}")
        return 1
    print(success(result))
    return 0


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    _broker_file_arguments(parser)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help=f"where node config files go (default {DEFAULT_OUT_DIR})")


def _cmd_provision(args: argparse.Namespace) -> int:
    return _cli("provision-node", args.name, lambda: provision_node(
        args.name, password_file=args.password_file, acl_file=args.acl_file, out_dir=args.out_dir, site=args.site,
        broker_host=args.broker_host, broker_port=args.broker_port, reload=not args.no_reload, tls=args.tls,
        ca_file=args.ca_file, mosquitto_pid_file=args.mosquitto_pid_file),
        lambda path: f"node {args.name} provisioned; copy {path} to the Pi and run: "
                     f"sudo scripts/install-edge.sh --config {path.name}")


def _cmd_revoke(args: argparse.Namespace) -> int:
    return _cli("revoke-node", args.name, lambda: revoke_node(
        args.name, password_file=args.password_file, out_dir=args.out_dir, reload=not args.no_reload,
        mosquitto_pid_file=args.mosquitto_pid_file),
        lambda removed: f"node {args.name} revoked" if removed
        else f"node {args.name} was not provisioned; nothing to do")
