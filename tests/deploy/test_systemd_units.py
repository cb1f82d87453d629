"""deploy/systemd: the units are valid for systemd (``systemd-analyze verify``, warnings included), hardened
(``systemd-analyze security``), and the listener's command line does what its comments say when arecord dies.

CI installs Debian's ``systemd`` package (``.ci/run``), so systemd-analyze is never missing there; elsewhere
the tests that need it are skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from kws.util.net import free_tcp_port

UNITS_DIR = REPO_ROOT / "deploy" / "systemd"
UNITS = sorted(UNITS_DIR.glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
#: The most exposure `systemd-analyze security` may give a unit (0 safest, 10 unsafe; "OK" is up to 3.9).
MOST_EXPOSURE = 3.0


def test_there_is_a_unit_for_the_listener_the_service_and_an_inference_client() -> None:
    assert [unit.name for unit in UNITS] == ["kws-big.service", "kws-infer@.service", "kws-little.service"]
    for unit in UNITS:
        text = unit.read_text()
        for setting in ("Restart=on-failure", "User=kws", "NoNewPrivileges=yes", "ProtectSystem=strict",
                        "PrivateTmp=yes", "EnvironmentFile=/etc/kws/", "After=network-online.target"):
            assert setting in text, f"{unit.name} lacks {setting}"
        env_file = re.search(r"^EnvironmentFile=/etc/kws/(\S+)$", text, re.MULTILINE).group(1)
        assert (UNITS_DIR / env_file).is_file(), f"{unit.name} reads {env_file}, which deploy/systemd lacks"
    assert "After=network-online.target sound.target" in (UNITS_DIR / "kws-little.service").read_text()


@needs_analyze
def test_systemd_analyze_verifies_every_unit_without_a_warning(tmp_path: Path) -> None:
    # A template is verified as itself and as an instance (the instance expands %i).
    instance = tmp_path / "kws-infer@ensemble_1.service"
    shutil.copy(UNITS_DIR / "kws-infer@.service", instance)
    done = subprocess.run([ANALYZE, "verify", "--man=no", *map(str, UNITS), str(instance)],
                          capture_output=True, text=True, timeout=120)
    # verify exits 0 after a setting it could not parse ("..., ignoring"): any word from it is a defect here.
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_every_unit_is_hardened(unit: Path) -> None:
    done = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert found, done.stdout[-2000:] + done.stderr
    assert float(found.group(1)) <= MOST_EXPOSURE, done.stdout[-3000:]


def exec_start(unit: Path) -> str:
    """The shell command of a unit's ``ExecStart=/bin/sh -c '...'``, as systemd hands it to sh ($$ -> $)."""
    text = unit.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3, argv
    return argv[2].replace("$$", "$")


def fake_bin(folder: Path, arecord_seconds: float) -> Path:
    """A PATH folder with an ``arecord`` that writes noise then fails (as when the device goes away) and notes
    its arguments, and a ``kws-little`` that runs this checkout's little_client.py."""
    folder.mkdir()
    arecord = folder / "arecord"
    arecord.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, numpy as np\n"
        "open(os.environ['ARECORD_ARGS'], 'w').write(' '.join(sys.argv[1:]))\n"
        f"pcm = (np.random.default_rng(0).standard_normal({round(arecord_seconds * 16000)}) * 300).astype('<i2')\n"
        "sys.stdout.buffer.write(pcm.tobytes()); sys.stdout.buffer.flush()\n"
        "print('arecord: pcm_read:1: read error: No such device', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    little = folder / "kws-little"
    script = shlex.quote(str(REPO_ROOT / "little_client.py"))
    little.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {script} "$@"\n')
    for script in (arecord, little):
        script.chmod(0o755)
    return folder


def test_the_listener_unit_restarts_when_arecord_dies(tmp_path: Path) -> None:
    """The unit's own command line, run by sh as systemd would, with the environment file's variables: arecord
    dying ends the pipeline with status 1 (Restart=on-failure acts on it) and one line in the journal."""
    bin_dir = fake_bin(tmp_path / "bin", arecord_seconds=2.0)
    env = {
        **os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "ARECORD_ARGS": str(tmp_path / "args"),
        "KWS_SERVICE": f"http://127.0.0.1:{free_tcp_port()}", "KWS_TOKEN_FILE": "", "KWS_CAFILE": "",
        "KWS_DEVICE": "pi-test", "KWS_AUDIO_DEVICE": "plughw:CARD=Mic,DEV=0", "KWS_LITTLE_FLAGS": "--little-only",
    }
    # From the checkout, whose models/ the checkout's little_client.py finds (installed: tests/deploy/test_install.py).
    done = subprocess.run(["/bin/sh", "-c", exec_start(UNITS_DIR / "kws-little.service")], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "args").read_text() == "-q -D plughw:CARD=Mic,DEV=0 -f S16_LE -r 16000 -c 1 -t raw"
    ended = [line for line in done.stderr.splitlines() if "the audio source ended" in line]
    assert len(ended) == 1 and "after 2.0 s" in ended[0], done.stderr


def test_the_listener_unit_needs_its_service_url(tmp_path: Path) -> None:
    bin_dir = fake_bin(tmp_path / "bin", arecord_seconds=0.1)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "ARECORD_ARGS": str(tmp_path / "a")}
    env.pop("KWS_SERVICE", None)
    done = subprocess.run(["/bin/sh", "-c", exec_start(UNITS_DIR / "kws-little.service")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "set KWS_SERVICE in /etc/kws/little.env" in done.stderr
