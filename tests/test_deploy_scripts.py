"""Install scripts: they parse, pass shellcheck, refuse bad arguments before touching the
system, and install to the paths the units and the CLI defaults expect."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hub.provision import DEFAULT_ACL_FILE, DEFAULT_PASSWORD_FILE

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [ROOT / "scripts" / "install-edge.sh", ROOT / "scripts" / "install-hub.sh",
           ROOT / "systemd" / "verify.sh", ROOT / "firmware_config" / "mosquitto" / "make-certs.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    shell = "bash" if script.read_text().startswith("#!/bin/bash") else "sh"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_shellcheck_clean(script: Path) -> None:
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS[:2], ids=lambda p: p.name)
def test_bad_arguments_stop_before_any_change(script: Path) -> None:
    result = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr


@pytest.mark.parametrize(("script", "unit", "program"), [
    ("install-edge.sh", "edge-agent.service", "edge-agent"),
    ("install-hub.sh", "stock-hub.service", "stock-hub"),
])
def test_scripts_install_where_the_units_look(script: str, unit: str, program: str) -> None:
    text = (ROOT / "scripts" / script).read_text()
    venv = re.search(r"^VENV=(.*)$", text, re.M)
    prefix = re.search(r"^PREFIX=(.*)$", text, re.M)
    assert venv and prefix
    venv_path = venv.group(1).replace("$PREFIX", prefix.group(1))
    exec_start = re.search(r"^ExecStart=(\S+)", (ROOT / "systemd" / unit).read_text(), re.M)
    assert exec_start and exec_start.group(1) == f"{venv_path}/bin/{program}"
    assert f"systemd/{unit}" in text


def test_hub_script_creates_the_files_provisioning_defaults_to() -> None:
    text = (ROOT / "scripts" / "install-hub.sh").read_text()
    mq_dir = re.search(r"^MQ_DIR=(.*)$", text, re.M)
    assert mq_dir and Path(mq_dir.group(1)) == DEFAULT_PASSWORD_FILE.parent == DEFAULT_ACL_FILE.parent
    conf = (ROOT / "firmware_config" / "mosquitto" / "shelfsignal.conf").read_text()
    assert f"password_file {DEFAULT_PASSWORD_FILE}" in conf and f"acl_file {DEFAULT_ACL_FILE}" in conf


def test_edge_script_moves_the_mqtt_password_into_the_credential_file(tmp_path: Path) -> None:
    """The Python step of install-edge.sh, run on a provisioned node file: the password ends up in a
    0600 file that the unit's LoadCredential= reads, and the config points at it."""
    import stat

    from edge.config import load_edge_config
    from hub.provision import edge_config_text

    text = (ROOT / "scripts" / "install-edge.sh").read_text()
    step = re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.S)
    assert step, "install-edge.sh: the password step (a <<'PY' here-document) is missing"
    conf_dir = re.search(r"^CONF_DIR=(.*)$", text, re.M)
    credential = re.search(r"^LoadCredential=mqtt-password:(\S+)$", (ROOT / "systemd" / "edge-agent.service").read_text(),
                           re.M)
    assert conf_dir and credential and credential.group(1) == f"{conf_dir.group(1)}/mqtt-password"
    config = tmp_path / "edge.toml"
    config.write_text(edge_config_text("pi-dock-1", site="main-wh", password="s3cret-pw", broker_host="hub.lan",
                                       broker_port=1883))
    secret = tmp_path / "mqtt-password"
    for _ in range(2):  # a second install changes nothing
        subprocess.run(["python3", "-c", step.group(1), str(config), str(secret)], check=True, capture_output=True)
        assert "s3cret-pw" not in config.read_text()
        assert secret.read_text() == "s3cret-pw\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert f'password_file = "{secret}"' in config.read_text()
        assert load_edge_config(config).mqtt.password == "s3cret-pw"
