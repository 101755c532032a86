"""docs/asyncapi.yaml and the contract package must agree, message by message, field by field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract import EVENT_TYPES, MESSAGE_TYPES, SHELF_FAULTS, Channel
from contract.outbound import OUTBOUND_TYPES

DOC = yaml.safe_load((Path(__file__).parent.parent / "docs" / "asyncapi.yaml").read_text())
MESSAGES = DOC["components"]["messages"]
# What edges and hub exchange, and what the hub publishes for other consumers: all in the one document.
ALL_TYPES = {**MESSAGE_TYPES, **OUTBOUND_TYPES}
SCHEMAS = DOC["components"]["schemas"]


def wire_fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_document_is_asyncapi_3() -> None:
    assert DOC["asyncapi"].startswith("3.")


def test_every_message_type_in_code_is_documented_and_vice_versa() -> None:
    assert set(MESSAGES) == set(ALL_TYPES)


@pytest.mark.parametrize("name", sorted(ALL_TYPES))
def test_message_fields_match_the_dataclass(name: str) -> None:
    documented = set(MESSAGES[name]["payload"]["properties"])
    assert documented == wire_fields(ALL_TYPES[name]), f"{name}: document and code list different fields"


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_event_fields_match_the_dataclass(kind: str) -> None:
    cls = EVENT_TYPES[kind]
    schema = SCHEMAS[cls.__name__]
    assert schema["properties"]["kind"]["const"] == kind
    assert set(schema["properties"]) == wire_fields(cls) | {"kind"}
    required = set(schema["required"]) - {"kind"}
    code_required = {f.name for f in dataclasses.fields(cls)
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert required == code_required, f"{kind}: required fields differ"


def test_shelf_fault_kinds_match_the_contract() -> None:
    assert set(SCHEMAS["ShelfFault"]["properties"]["fault"]["enum"]) == set(SHELF_FAULTS)


def test_every_event_kind_is_in_the_batch_schema() -> None:
    refs = {item["$ref"].rsplit("/", 1)[1]
            for item in MESSAGES["EventBatch"]["payload"]["properties"]["events"]["items"]["oneOf"]}
    assert refs == {cls.__name__ for cls in EVENT_TYPES.values()}


@pytest.mark.parametrize("name", sorted(ALL_TYPES))
def test_every_example_parses_and_round_trips(name: str) -> None:
    examples = MESSAGES[name].get("examples", [])
    assert examples, f"{name} has no example"
    for example in examples:
        raw = json.dumps(example["payload"]).encode()
        parsed = ALL_TYPES[name].from_json(raw)
        assert ALL_TYPES[name].from_json(parsed.to_json()) == parsed
        assert json.loads(parsed.to_json()) == example["payload"], f"{name}/{example['name']} does not round-trip"


def test_every_example_event_kind_is_covered() -> None:
    kinds = {e["kind"] for ex in MESSAGES["EventBatch"]["examples"] for e in ex["payload"]["events"]}
    assert kinds == set(EVENT_TYPES)


def test_every_channel_is_documented() -> None:
    addresses = {ch["address"].rsplit("}/", 1)[1] for ch in DOC["channels"].values()}
    assert {c.value for c in Channel} <= addresses
