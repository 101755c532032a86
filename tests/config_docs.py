"""Render docs/configuration.md from the declared settings (`python -m tests.config_docs` rewrites it)."""

from __future__ import annotations

from pathlib import Path

from edge.config import ARRAY_TABLES, EDGE_SETTINGS
from edge.config import ENV_PREFIX as EDGE_ENV
from hub.config import ENV_PREFIX as HUB_ENV
from hub.config import HUB_ARRAY_TABLES, HUB_SETTINGS
from settings import describe


def render() -> str:
    return f"""# Configuration reference

Generated from the declarations in `edge/config.py`, `edge/scan/config.py`,
`edge/shelf/config.py` and `hub/config.py` (a test keeps this file in step; rewrite it with
`python -m tests.config_docs`). Both programs read one TOML file; a key `a.b` is `b` in the
table `[a]`. Environment variables override the file (for systemd `EnvironmentFile=`). A bad
key or value stops the program with one line naming the file, the key and the problem;
`edge-agent check-config FILE` and `stock-hub check-config FILE` check a file without starting.

## Edge agent (`edge-agent run --config FILE`)

{describe(EDGE_SETTINGS, EDGE_ENV)}

### Each `[[scanner]]`

{describe(ARRAY_TABLES["scanner"])}

### Each `[[shelf]]`

{describe(ARRAY_TABLES["shelf"])}

## Hub (`stock-hub serve --config FILE`)

{describe(HUB_SETTINGS, HUB_ENV)}

### Each `[[alert_rule]]`

Who is told what (docs/alerts.md); rules can also be made on the admin page `/alerts`.

{describe(HUB_ARRAY_TABLES["alert_rule"])}
"""


if __name__ == "__main__":
    (Path(__file__).parent.parent / "docs" / "configuration.md").write_text(render())
