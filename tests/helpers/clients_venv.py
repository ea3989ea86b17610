"""A virtualenv of its own for ThingsBoard's device SDK (``tb-mqtt-client``), run as subprocesses.

The SDK cannot share the test interpreter: it ships a top-level ``utils.py``, pip-installs
``mmh3`` at import when it is missing, and its paho fork (``tb-paho-mqtt-client``) installs
into the same ``paho`` package as upstream ``paho-mqtt``, which our own MQTT tests use. So the
``tb_client_python`` fixture builds a throw-away virtualenv under ``.test-venvs/`` in the repo
(gitignored) once, reuses it while it still imports the SDK, and scripts run in it with
``run_client_script``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: The SDK release the tests run (pinned: the venv directory is named after it and reused).
TB_MQTT_CLIENT_VERSION = "1.13.14"
#: Installed up front so importing the SDK never runs pip itself (its sdk_utils would).
REQUIREMENTS = (f"tb-mqtt-client=={TB_MQTT_CLIENT_VERSION}", "mmh3")
VENVS = Path(__file__).resolve().parent.parent.parent / ".test-venvs"
READY = ".ready"  # written last: a venv without it was interrupted mid-build and is rebuilt
PROBE = "import tb_device_mqtt, tb_device_http, mmh3"
PIP_TIMEOUT = 900


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _imports_sdk(venv: Path) -> bool:
    probe = subprocess.run([str(_python(venv)), "-I", "-c", PROBE], capture_output=True, timeout=120)
    return probe.returncode == 0


def _usable(venv: Path) -> bool:
    """Built to the end for these requirements and still importing the SDK (its base
    interpreter may have gone since)."""
    ready = venv / READY
    return ready.exists() and ready.read_text() == "\n".join(REQUIREMENTS) and _imports_sdk(venv)


def _run(cmd: list[str], what: str) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took longer than {PIP_TIMEOUT} s: {' '.join(cmd)}") from None
    if r.returncode:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {r.returncode}): {' '.join(cmd)}\n{tail}")


def ensure_client_venv(root: Path = VENVS) -> Path:
    """The SDK's virtualenv, built on first use (a lock keeps concurrent test runs apart)."""
    venv = root / f"tb-mqtt-client-{TB_MQTT_CLIENT_VERSION}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if venv.exists() and _usable(venv):
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], "creating the tb-mqtt-client virtualenv")
        _run(
            [str(_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
            f"pip install {' '.join(REQUIREMENTS)} into {venv}",
        )
        if not _imports_sdk(venv):
            raise RuntimeError(f"{venv}: the SDK was installed but `{PROBE}` fails")
        (venv / READY).write_text("\n".join(REQUIREMENTS))
        return venv


@pytest.fixture(scope="session")
def tb_client_python() -> Path:
    """The interpreter of the tb-mqtt-client virtualenv (built once, then reused)."""
    try:
        return _python(ensure_client_venv())
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"cannot prepare the tb-mqtt-client virtualenv: {exc}", pytrace=False)


def run_client_script(python: Path, script: str, *args: str, cwd: Path, timeout: float = 60) -> dict:
    """Run ``script`` in the SDK's venv (isolated: no PYTHONPATH, no cwd on sys.path); it
    prints ``RESULT <json>`` — that object is returned, or the test fails with the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    r = subprocess.run(
        [str(python), "-I", "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and lines, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(lines[-1][len("RESULT ") :])
