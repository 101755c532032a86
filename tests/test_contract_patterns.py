"""Every string field with a documented pattern accepts exactly what the pattern says, no more.

The patterns come from docs/asyncapi.yaml, read with JSON Schema's meaning: `^` and `$` are
the very start and end of the value. Python's `$` also matches before a final newline, so
`"A-01\\n"` once passed as a location. Each patterned field of each documented message is
filled with generated values (valid ones, valid ones with a character tacked on, any text)
and parsed by the code of record: the message's `from_json` (with the hub's fast path for
events) and, for events, the strict reader alone.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import EVENT_TYPES, MESSAGE_TYPES, ContractError, check_name, parse_topic
from contract._fields import Fields
from contract.outbound import OUTBOUND_TYPES

DOC = yaml.safe_load((Path(__file__).parent.parent / "docs" / "asyncapi.yaml").read_text())
SCHEMAS = DOC["components"]["schemas"]
MESSAGES = DOC["components"]["messages"]
EVENT_SCHEMA_BY_KIND = {kind: cls.__name__ for kind, cls in EVENT_TYPES.items()}
# What an attacker or a broken edge tacks onto a valid value.
TAILS = ["\n", "\r\n", "\r", " ", "\t", "\x00", "\u2028", "\x0b"]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def patterned_fields(payload: Any, schema: dict[str, Any], path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(path, pattern) of every patterned property in the schema of this example, present or not."""
    schema = resolve(schema)
    found: list[tuple[tuple[Any, ...], str]] = []
    if "oneOf" in schema and isinstance(payload, dict):
        return patterned_fields(payload, SCHEMAS[EVENT_SCHEMA_BY_KIND[payload["kind"]]], path)
    if schema.get("type") == "object" or "properties" in schema:
        for key, sub in schema.get("properties", {}).items():
            sub_resolved = resolve(sub)
            if "pattern" in sub_resolved:
                found.append((path + (key,), sub_resolved["pattern"]))
            elif key in payload:
                found += patterned_fields(payload[key], sub, path + (key,))
    elif schema.get("type") == "array":
        for i, item in enumerate(payload):
            found += patterned_fields(item, schema["items"], path + (i,))
    return found


def cases() -> list[tuple[str, dict[str, Any], tuple[Any, ...], str]]:
    return [(name, example["payload"], path, pattern)
            for name, message in MESSAGES.items() for example in message.get("examples", [])
            for path, pattern in patterned_fields(example["payload"], message["payload"])]


def case_id(name: str, payload: dict[str, Any], path: tuple[Any, ...]) -> str:
    steps = [payload["events"][path[1]]["kind"] if i == 1 and path[0] == "events" else str(step)
             for i, step in enumerate(path)]
    return ".".join([name, *steps])


CASES = cases()


def documented(pattern: str, value: str) -> bool:
    """JSON Schema's reading of a pattern: an ECMA-262 search where `$` is only the end of input."""
    assert pattern.count("$") == 1 and pattern.endswith("$"), pattern
    return re.search(pattern[:-1] + r"\Z", value) is not None


def values(pattern: str) -> st.SearchStrategy[str]:
    valid = st.from_regex(pattern, fullmatch=True)
    return st.one_of(valid, st.tuples(valid, st.sampled_from(TAILS)).map("".join),
                     st.tuples(st.sampled_from(TAILS), valid).map("".join), st.text(max_size=40))


def with_value(payload: dict[str, Any], path: tuple[Any, ...], value: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


def accepts(parse: Any, obj: Any) -> bool:
    try:
        parse(obj)
    except ContractError:
        return False
    return True


def test_every_documented_pattern_is_covered() -> None:
    fields = {path[-1] for _, _, path, _ in CASES}
    assert {"node", "stream", "gtin", "location", "from_location", "expiry", "bin"} <= fields


@pytest.mark.parametrize("name, payload, path, pattern", CASES,
                         ids=[case_id(c[0], c[1], c[2]) for c in CASES])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_accepted_value_differs_from_its_documented_pattern(name: str, payload: dict[str, Any],
                                                               path: tuple[Any, ...], pattern: str,
                                                               data: st.DataObject) -> None:
    value = data.draw(values(pattern))
    obj = with_value(payload, path, value)
    expected = documented(pattern, value)
    parse_message = {**MESSAGE_TYPES, **OUTBOUND_TYPES}[name].from_json
    assert accepts(lambda o: parse_message(json.dumps(o).encode()), obj) == expected, (name, path, value)
    if path[0] == "events":  # the strict reader alone, without the fast path in front of it
        event = obj["events"][path[1]]
        cls = EVENT_TYPES[event["kind"]]

        def strict(o: Any) -> None:
            f = Fields(o, "event")
            f.str("kind", 32)
            cls.read(f)
            f.done()
        assert accepts(strict, event) == expected, (name, path, value)


@pytest.mark.parametrize("tail", TAILS)
def test_topic_names_are_matched_in_full(tail: str) -> None:
    with pytest.raises(ValueError):
        check_name("node", "pi-1" + tail)
    with pytest.raises(ContractError):
        parse_topic(f"wh/v1/site{tail}/pi-1/events")
    with pytest.raises(ContractError):
        parse_topic(f"wh/v1/site/pi-1{tail}/events")
