"""Strict readers for JSON objects: every rejection names the field and the problem.

Private to the contract package: the message classes use these so that each
`from_json` reads like the schema it enforces.
"""

from __future__ import annotations

import math
import re
from typing import Any

from contract.errors import ContractError

INT64_MAX = 2**63 - 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
STREAM_RE = re.compile(r"^[0-9a-f]{8,32}$")
# Epoch milliseconds from 2001 to 2286: anything outside is a broken clock or a unit mistake.
TS_MIN_MS = 1_000_000_000_000
TS_MAX_MS = 9_999_999_999_999


class Fields:
    """A JSON object being read; tracks which keys were used so leftovers are rejected."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise ContractError(f"{where}: expected a JSON object, got {_type_name(obj)}")
        self._obj: dict[str, Any] = obj
        self._where = where
        self._used: set[str] = set()

    def _get(self, key: str, required: bool) -> Any:
        self._used.add(key)
        if key not in self._obj or self._obj[key] is None:
            if required:
                raise ContractError(f"{self._where}: missing field '{key}'")
            return None
        return self._obj[key]

    def _bad(self, key: str, want: str, got: Any) -> ContractError:
        return ContractError(f"{self._where}: field '{key}' must be {want}, got {_short(got)}")

    def int(self, key: str, lo: int = 0, hi: int = INT64_MAX, required: bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if isinstance(val, bool) or not isinstance(val, int):
            raise self._bad(key, "an integer", val)
        if not lo <= val <= hi:
            raise self._bad(key, f"between {lo} and {hi}", val)
        return val

    def ts_ms(self, key: str, required: bool = True) -> Any:
        return self.int(key, TS_MIN_MS, TS_MAX_MS, required)

    def float(self, key: str, lo: float, hi: float, required: bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise self._bad(key, "a number", val)
        if not math.isfinite(val) or not lo <= val <= hi:
            raise self._bad(key, f"a number between {lo:g} and {hi:g}", val)
        return float(val)

    def bool(self, key: str, required: bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if not isinstance(val, bool):
            raise self._bad(key, "true or false", val)
        return val

    def str(self, key: str, max_len: int = 256, required: bool = True,
            pattern: re.Pattern[str] | None = None, choices: frozenset[str] | None = None) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if not isinstance(val, str):
            raise self._bad(key, "a string", val)
        if len(val) > max_len:
            raise self._bad(key, f"at most {max_len} characters", f"{len(val)} characters")
        if pattern is not None and not pattern.match(val):
            raise self._bad(key, f"matching {pattern.pattern}", val)
        if choices is not None and val not in choices:
            raise self._bad(key, "one of " + ", ".join(sorted(choices)), val)
        return val

    def name(self, key: str, required: bool = True) -> Any:
        return self.str(key, 32, required, pattern=NAME_RE)

    def list(self, key: str, max_items: int, min_items: int = 0) -> list[Any]:
        val = self._get(key, True)
        if not isinstance(val, list):
            raise self._bad(key, "a list", val)
        if not min_items <= len(val) <= max_items:
            raise self._bad(key, f"a list of {min_items} to {max_items} items", f"{len(val)} items")
        return val

    def obj(self, key: str, required: bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        return Fields(val, f"{self._where}.{key}")

    def version(self, expected: int) -> None:
        got = self.int("v", 0, 1000)
        if got != expected:
            raise ContractError(f"{self._where}: schema version {got} is not supported (expected {expected})")

    def done(self) -> None:
        """Reject keys the schema does not know: a typo must not pass as a default."""
        extra = sorted(set(self._obj) - self._used)
        if extra:
            raise ContractError(f"{self._where}: unknown field '{extra[0]}'")


def _type_name(val: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean",
            int: "integer", float: "number", type(None): "null"}.get(type(val), type(val).__name__)


def _short(val: Any) -> str:
    text = repr(val)
    return text if len(text) <= 40 else text[:37] + "..."
