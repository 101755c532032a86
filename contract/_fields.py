"""Strict readers for JSON objects: every rejection names the field and the problem.

Private to the contract package: the message classes use these so that each
`from_json` reads like the schema it enforces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

from contract.errors import ContractError, UnknownToThisVersion

INT64_MAX = 2**63 - 1
# Patterns are written as docs/asyncapi.yaml states them and always used with fullmatch():
# Python's `$` also matches before a final newline, so `.match()` would let "A-01\n" through.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
NAME_MAX_CHARS = 32  # NAME_RE's own bound, checked first so the error says "too long"
TEXT_MAX_CHARS = 256  # a string field without a limit of its own
STREAM_RE = re.compile(r"^[0-9a-f]{8,32}$")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# Epoch milliseconds from 2001 to 2286: anything outside is a broken clock or a unit mistake.
TS_MIN_MS = 1_000_000_000_000
TS_MAX_MS = 9_999_999_999_999


# Aliases: the reader's methods are named after JSON types and shadow the builtins in its body.
_Str: TypeAlias = str
_Int: TypeAlias = int
_Float: TypeAlias = float
_Bool: TypeAlias = bool
_List: TypeAlias = list
T = TypeVar("T")


class Fields:
    """A JSON object being read; tracks which keys were used so leftovers are rejected."""

    def __init__(self, obj: Any, where: _Str) -> None:
        if not isinstance(obj, dict):
            raise ContractError(f"{where}: expected a JSON object, got {_type_name(obj)}")
        self._obj: dict[_Str, Any] = obj
        self._where = where
        self._used: set[_Str] = set()

    def _get(self, key: _Str, required: _Bool) -> Any:
        self._used.add(key)
        if key not in self._obj or self._obj[key] is None:
            if required:
                raise ContractError(f"{self._where}: missing field '{key}'")
            return None
        return self._obj[key]

    def _bad(self, key: _Str, want: _Str, got: Any) -> ContractError:
        return ContractError(f"{self._where}: field '{key}' must be {want}, got {_short(got)}")

    def int(self, key: _Str, lo: _Int = 0, hi: _Int = INT64_MAX, required: _Bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if isinstance(val, _Bool) or not isinstance(val, _Int):
            raise self._bad(key, "an integer", val)
        if not lo <= val <= hi:
            raise self._bad(key, f"between {lo} and {hi}", val)
        return val

    def ts_ms(self, key: _Str, required: _Bool = True) -> Any:
        return self.int(key, TS_MIN_MS, TS_MAX_MS, required)

    def float(self, key: _Str, lo: _Float, hi: _Float, required: _Bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if isinstance(val, _Bool) or not isinstance(val, (_Int, _Float)):
            raise self._bad(key, "a number", val)
        if not math.isfinite(val) or not lo <= val <= hi:
            raise self._bad(key, f"a number between {lo:g} and {hi:g}", val)
        return float(val)

    def bool(self, key: _Str, required: _Bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if not isinstance(val, _Bool):
            raise self._bad(key, "true or false", val)
        return val

    def str(self, key: _Str, max_len: _Int = TEXT_MAX_CHARS, required: _Bool = True,
            pattern: re.Pattern[_Str] | None = None, choices: frozenset[_Str] | None = None) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        if not isinstance(val, _Str):
            raise self._bad(key, "a string", val)
        if not val.isascii() and _SURROGATE_RE.search(val):
            # JSON can spell a lone surrogate ("\\ud800"); it is not Unicode and no UTF-8 store can hold it.
            raise self._bad(key, "valid Unicode (no lone surrogate)", val)
        if len(val) > max_len:
            raise self._bad(key, f"at most {max_len} characters", f"{len(val)} characters")
        if pattern is not None and not pattern.fullmatch(val):
            raise self._bad(key, f"matching {pattern.pattern}", val)
        if choices is not None and val not in choices:
            raise UnknownToThisVersion(f"{self._where}: field '{key}' must be one of {', '.join(sorted(choices))}, "
                                       f"got {_short(val)}")
        return val

    def name(self, key: _Str, required: _Bool = True) -> Any:
        return self.str(key, NAME_MAX_CHARS, required, pattern=NAME_RE)

    def list(self, key: _Str, max_items: _Int, min_items: _Int = 0, required: _Bool = True) -> _List[Any]:
        val = self._get(key, required)
        if val is None and not required:
            return []
        if not isinstance(val, list):
            raise self._bad(key, "a list", val)
        if not min_items <= len(val) <= max_items:
            raise self._bad(key, f"a list of {min_items} to {max_items} items", f"{len(val)} items")
        return val

    def objects(self, key: _Str, max_items: _Int, read: Callable[[Fields], T]) -> _List[T]:
        """A list of JSON objects, each read by `read` and then checked for unknown keys."""
        out: _List[T] = []
        for i, raw in enumerate(self.list(key, max_items)):
            item = Fields(raw, f"{self._where}.{key}[{i}]")
            out.append(read(item))
            item.done()
        return out

    def obj(self, key: _Str, required: _Bool = True) -> Any:
        val = self._get(key, required)
        if val is None:
            return None
        return Fields(val, f"{self._where}.{key}")

    def version(self, expected: _Int) -> None:
        got = self.int("v", 0, 1000)
        if got > expected:
            raise UnknownToThisVersion(f"{self._where}: schema version {got} is newer than this one ({expected})")
        if got != expected:
            raise ContractError(f"{self._where}: schema version {got} is not supported (expected {expected})")

    def done(self) -> None:
        """Reject keys the schema does not know: a typo must not pass as a default."""
        extra = sorted(set(self._obj) - self._used)
        if extra:
            raise UnknownToThisVersion(f"{self._where}: unknown field '{extra[0]}'")


def _type_name(val: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean",
            int: "integer", float: "number", type(None): "null"}.get(type(val), type(val).__name__)


def _short(val: Any) -> str:
    text = repr(val)
    return text if len(text) <= 40 else text[:37] + "..."
