"""`stock-hub add-user`, `add-token`, `revoke-token`: manage who may use the page and the API."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from hub.auth.roles import ROLES, Role
from hub.auth.store import AuthError, AuthStore
from hub.db import AUTH


def _store(config_path: str) -> AuthStore:
    from hub.config import load_hub_config
    return AuthStore(load_hub_config(config_path).db_target(AUTH))


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass(f"password for {args.name}: ")
        again = getpass.getpass("again: ")
    except EOFError:  # no terminal and nothing on stdin (a script, ssh without -t, cron)
        raise AuthError("no password was typed (no terminal?): give it on standard input with --password-stdin; "
                        "nothing changed") from None
    if first != again:
        raise AuthError("the two passwords differ; nothing changed")
    return first


def cmd_add_user(args: argparse.Namespace) -> int:
    """Create a user (or reset an existing user's role and password)."""
    from settings import ConfigError
    try:
        role = Role.parse(args.role)
        password = _read_password(args)
        store = _store(args.config)
        try:
            store.set_user(args.name, role, password)
        finally:
            store.close()
    except (AuthError, ValueError, ConfigError) as err:
        print(f"stock-hub add-user: {err}", file=sys.stderr)
        return 2
    print(f"user {args.name} can now log in as {role.label}")
    return 0


def cmd_add_token(args: argparse.Namespace) -> int:
    """Create an API token and print it once (it is stored only as a hash)."""
    from settings import ConfigError
    try:
        store = _store(args.config)
        try:
            token = store.add_token(args.name, Role.parse(args.role))
        finally:
            store.close()
    except (AuthError, ValueError, ConfigError) as err:
        print(f"stock-hub add-token: {err}", file=sys.stderr)
        return 2
    print(token)
    print(f"(API token {args.name!r}: send it as 'Authorization: Bearer <token>'; it is not shown again)",
          file=sys.stderr)
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    store = _store(args.config)
    try:
        count = store.revoke_token(args.name)
    finally:
        store.close()
    print(f"revoked {count} token(s) named {args.name!r}")
    return 0 if count else 1


def add_subcommands(sub: Any) -> None:
    """Register the auth commands on stock-hub's subparsers."""
    user = sub.add_parser("add-user", help="create a user of the web page, or reset their password and role")
    user.add_argument("name")
    user.add_argument("--role", required=True, choices=ROLES)
    user.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    user.add_argument("--config", required=True)
    user.set_defaults(func=cmd_add_user)
    token = sub.add_parser("add-token", help="create an API token for a script (printed once)")
    token.add_argument("name", help="what uses it, e.g. 'erp-export'")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--config", required=True)
    token.set_defaults(func=cmd_add_token)
    revoke = sub.add_parser("revoke-token", help="revoke the API tokens of that name")
    revoke.add_argument("name")
    revoke.add_argument("--config", required=True)
    revoke.set_defaults(func=cmd_revoke_token)
