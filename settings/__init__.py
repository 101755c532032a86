"""Settings declared once (key, type, default, help), read from TOML with environment overrides.

Both programs describe every key they accept as a `Setting`; `load_file` reads a TOML file,
applies `PREFIX_SECTION_KEY` environment variables (for systemd `EnvironmentFile=`), and
raises `ConfigError` with one line naming the file, the key and the problem.
Standard library only, like the contract, so the edge and the hub can both use it.
"""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUIRED: Any = object()  # marker default: the key must be given


class ConfigError(Exception):
    """A configuration problem; the text is one line naming file, key and problem."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration key: dotted name, type, default, help text and optional check."""

    key: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a problem sentence or None
    choices: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    def env_var(self, prefix: str) -> str:
        return f"{prefix}_{self.key.replace('.', '_').replace('-', '_').upper()}"

    def coerce(self, value: Any, origin: str) -> Any:
        """Convert and check a raw value; raise ConfigError naming origin."""
        want = self.type
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, str) and want is not str and origin.startswith("$"):
            value = _from_env_text(value, want, origin)
        if want is list:
            if not isinstance(value, list):
                raise ConfigError(f"{origin}: must be a list, got {value!r}")
        elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"{origin}: must be {_TYPE_WORDS.get(want, want.__name__)}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{origin}: must be one of {', '.join(self.choices)}, got {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{origin}: {problem}")
        return value


_TYPE_WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def _from_env_text(text: str, want: type, origin: str) -> Any:
    try:
        if want is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if want is list:
            return [item.strip() for item in text.split(",") if item.strip()]
        return want(text)
    except ValueError:
        raise ConfigError(f"{origin}: cannot read {text!r} as {_TYPE_WORDS.get(want, want.__name__)}") from None


def raises_value_error(check: Callable[[Any], object]) -> Callable[[Any], str | None]:
    """A Setting check made from a function that raises ValueError naming the problem (contract.check_name...)."""
    def problem(value: Any) -> str | None:
        try:
            check(value)
        except ValueError as err:
            return str(err)
        return None
    return problem


def positive(value: Any) -> str | None:
    """Check helper: value must be > 0."""
    return None if value > 0 else f"must be greater than 0, got {value!r}"


def keepalive_seconds(value: Any) -> str | None:
    """Check helper: an MQTT keepalive, 1 to 65535 s (two bytes in CONNECT)."""
    return None if 1 <= value <= 65535 else f"must be between 1 and 65535 seconds, got {value!r}"


def port_number(value: Any) -> str | None:
    """Check helper: a TCP port, 0 meaning 'pick a free one'."""
    return None if 0 <= value <= 65535 else f"must be a port number 0-65535, got {value!r}"


def exits_on_config_error(prog: str) -> Callable[[Callable[[Any], int]], Callable[[Any], int]]:
    """Decorate a CLI command: a ConfigError becomes its one line on stderr and exit code 2."""
    def decorate(fn: Callable[[Any], int]) -> Callable[[Any], int]:
        def run(args: Any) -> int:
            try:
                return int(fn(args))
            except ConfigError as err:
                print(f"{prog}: {err}", file=sys.stderr)
                return 2
        run.__doc__ = fn.__doc__
        return run
    return decorate


def read_secret(path: str, key: str, where: str) -> str:
    """The first line of a secret file (a password), or ConfigError naming the key and the file."""
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        raise ConfigError(f"{where}: key '{key}': cannot read {path} ({err.strerror})") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file or raise ConfigError with the file name and TOML's own message."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def resolve(doc: Mapping[str, Any], settings: Sequence[Setting], where: str,
            env_prefix: str | None = None, environ: Mapping[str, str] | None = None,
            array_tables: Mapping[str, Sequence[Setting]] | None = None) -> dict[str, Any]:
    """Turn a parsed TOML document into {dotted key: value}, checking every key.

    Arrays of tables (`[[scanner]]`) named in `array_tables` become lists of such dicts,
    stored under their table name.
    """
    environ = os.environ if environ is None else environ
    array_tables = array_tables or {}
    known = {s.key: s for s in settings}
    flat = _flatten(doc, "", set(array_tables))
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in array_tables:
            continue
        setting = known.get(key)
        if setting is None:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(key, list(known) + list(array_tables))}")
        out[key] = setting.coerce(value, f"{where}: key '{key}'")
    for setting in settings:
        if env_prefix:
            var = setting.env_var(env_prefix)
            if var in environ:
                out[setting.key] = setting.coerce(environ[var], f"${var}")
                continue
        if setting.key not in out:
            if setting.default is REQUIRED:
                raise ConfigError(f"{where}: key '{setting.key}' is required ({setting.help})")
            out[setting.key] = setting.default
    for table, table_settings in array_tables.items():
        items = doc.get(table, [])
        if not isinstance(items, list):
            raise ConfigError(f"{where}: '{table}' must be an array of tables ([[{table}]])")
        out[table] = [resolve(item, table_settings, f"{where}: [[{table}]] #{i + 1}", None, {})
                      for i, item in enumerate(items)]
    return out


def load_file(path: str | Path, settings: Sequence[Setting], env_prefix: str | None = None,
              array_tables: Mapping[str, Sequence[Setting]] | None = None) -> dict[str, Any]:
    """Read and resolve a TOML config file."""
    path = Path(path)
    return resolve(read_toml(path), settings, str(path), env_prefix, None, array_tables)


def describe(settings: Sequence[Setting], env_prefix: str | None = None) -> str:
    """A Markdown table of settings, for docs and `--help-config`."""
    lines = ["| key | type | default | environment | meaning |", "| --- | --- | --- | --- | --- |"]
    for s in settings:
        default = "(required)" if s.default is REQUIRED else repr(s.default)
        env = f"`{s.env_var(env_prefix)}`" if env_prefix else ""
        lines.append(f"| `{s.key}` | {s.type.__name__} | `{default}` | {env} | {s.help} |")
    return "\n".join(lines)


def _flatten(doc: Mapping[str, Any], prefix: str, keep: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in keep:
            out.update(_flatten(value, dotted + ".", keep))
        else:
            out[dotted] = value
    return out


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
