"""Fuzz the JSON API from docs/openapi.yaml with schemathesis against a live hub: no 500s.

The hub runs in this process on real HTTP with a real broker; schemathesis runs as its own
process (its CLI), authenticated with an admin API token so every operation is reachable.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest

from hub.mosquitto import PrivateBroker
from tests.support import api_token, start_web_hub

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "openapi.yaml"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = 25  # per operation: enough to hit bad paths, parameters and bodies in seconds
FUZZ_TIMEOUT_S = 100

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SPEC.exists(), reason="docs/openapi.yaml does not exist yet (the ledger engineer's)"),
    pytest.mark.skipif(not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None,
                       reason="schemathesis is not installed (pip install 'schemathesis>=3.30')"),
]


async def test_fuzzing_the_api_finds_no_server_errors(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    try:
        token = api_token(service.config, role="admin", name="fuzz")
        exe = str(SCHEMATHESIS) if SCHEMATHESIS.exists() else "schemathesis"
        proc = await asyncio.create_subprocess_exec(
            exe, "run", str(SPEC), "--url", base, "--header", f"Authorization: Bearer {token}",
            "--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES), "--seed", "1",
            "--exclude-path", "/api/v1/live",  # an endless event stream: not a request/response operation
            "--request-timeout", "10", "--report-dir", str(tmp_path / "fuzz-report"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), FUZZ_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        assert proc.returncode == 0, f"schemathesis found problems:\n{text[-6000:]}"
        ran = re.search(r"(\d+) generated, (\d+) passed", text)
        assert ran and int(ran.group(1)) > 0 and ran.group(1) == ran.group(2), f"schemathesis ran nothing:\n{text[-3000:]}"
    finally:
        await runner.cleanup()
