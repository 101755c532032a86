"""The interface documents validate with the tools integrators use: AsyncAPI with the AsyncAPI
initiative's parser (npm @asyncapi/parser, installed by ./scripts/test into .venv/asyncapi) and
both OpenAPI documents with openapi-spec-validator; every operation has an operationId and a
security scheme, and the AsyncAPI document states QoS, retain and the Last Will as MQTT bindings."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from tests.support import openapi_operations

ROOT = Path(__file__).resolve().parent.parent
ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"
OPENAPI_DOCUMENTS = (ROOT / "docs" / "openapi.yaml", ROOT / "docs" / "central-openapi.yaml")
PARSER = ROOT / ".venv" / "asyncapi" / "validate.mjs"
# Channels whose last message a new subscriber needs: the broker keeps it (retained).
RETAINED_CHANNELS = {"nodeState", "nodeConfig", "hubState", "hubBins", "hubSkus", "hubDiscrepancies"}


def _load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", OPENAPI_DOCUMENTS, ids=lambda p: p.name)
def test_openapi_document_validates(path: Path) -> None:
    validate(_load(path))


@pytest.mark.parametrize("path", OPENAPI_DOCUMENTS, ids=lambda p: p.name)
def test_every_operation_has_a_unique_operation_id_and_a_security_scheme(path: Path) -> None:
    doc = _load(path)
    operations = openapi_operations(doc)
    ids = [op.get("operationId") for _, _, op in operations]
    assert [f"{m.upper()} {p}" for (m, p, _), i in zip(operations, ids, strict=True) if not i] == []
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    schemes = doc["components"]["securitySchemes"]
    for method, route, op in operations:
        for requirement in op.get("security", doc.get("security", [])):
            assert set(requirement) <= set(schemes), f"{method.upper()} {route} names an undeclared scheme"
    assert doc.get("security"), "a document-wide security requirement (open routes opt out with security: [])"


def test_asyncapi_document_passes_the_asyncapi_parser() -> None:
    node = shutil.which("node")
    if node is None or not PARSER.exists():
        pytest.skip("the AsyncAPI parser is not installed (./scripts/test installs Node.js and it into .venv/asyncapi)")
    result = subprocess.run([node, str(PARSER), str(ASYNCAPI)], capture_output=True, text=True, timeout=60)
    diagnostics = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, result.stdout + result.stderr
    # Severity 0 is an error, 1 a warning: neither is acceptable; hints (2, 3) are printed for people.
    assert [d for d in diagnostics if d["severity"] <= 1] == []


def test_asyncapi_is_the_current_version_with_mqtt_bindings() -> None:
    doc = _load(ASYNCAPI)
    assert doc["asyncapi"] == "3.1.0"
    will = doc["servers"]["site-broker"]["bindings"]["mqtt"]["lastWill"]
    assert will["qos"] == 1 and will["retain"] is True and will["topic"].endswith("/state")
    for name, op in doc["operations"].items():
        channel = op["channel"]["$ref"].rsplit("/", 1)[1]
        binding = op["bindings"]["mqtt"]
        assert binding["qos"] == 1, f"{name}: every channel is QoS 1 (the exactly-once effect is ours)"
        assert binding["retain"] is (channel in RETAINED_CHANNELS), f"{name}: retain flag"


def test_the_alert_kinds_in_openapi_are_the_hubs() -> None:
    from hub.alerts.model import EVENT_KINDS

    schema = _load(OPENAPI_DOCUMENTS[0])["components"]["schemas"]["AlertKind"]
    assert schema["enum"] == list(EVENT_KINDS)
