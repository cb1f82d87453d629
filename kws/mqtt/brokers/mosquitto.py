"""A private Mosquitto broker on a free local port, for the tests and the benchmarks.

It runs from its own configuration file, in its own folder, with persistence on,
so that a restart (:meth:`LocalMosquitto.restart`: SIGTERM, which makes mosquitto
save its database, then start again on the same port) keeps the persistent
sessions and their queued QoS 1 messages: the situation the MQTT clients must
survive without losing a clip.

By default it takes anonymous clients in plain text. :func:`recipe_listener` turns
the deployment recipe (``deploy/mosquitto/kws.conf``: password file, ACL, TLS
only) into its listener configuration, with the files where the test made them, so
the tests run the recipe itself rather than a copy of it.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

from kws.mqtt.protocol import BrokerAddress
from kws.util.net import free_tcp_port

log = logging.getLogger(__name__)

DEFAULT_EXECUTABLES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def find_mosquitto() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    for candidate in DEFAULT_EXECUTABLES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


#: The listener of the tests' broker: anonymous clients, plain text. ``{port}`` is filled in.
OPEN_LISTENER = """listener {port} 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 20000
"""
#: deploy/mosquitto/ in a checkout: the recipe's configuration, ACL and secrets script.
RECIPE_DIR = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto"
#: Where the recipe keeps its files on a broker, and its listener line.
RECIPE_FILES_DIR = "/etc/mosquitto/kws"
RECIPE_LISTENER_LINE = "listener 8883"


def mosquitto_config(port: int, state_dir: Path, listener: str = OPEN_LISTENER) -> str:
    """``listener`` (with ``{port}`` filled in), then persistent sessions in ``state_dir``.

    ``max_queued_messages`` (in the listeners) is raised from 1000 because a
    cooperative run may queue a few thousand clips for a slow or briefly
    disconnected client. ``user`` keeps mosquitto, when started as root, from
    switching to the ``mosquitto`` user, who could not read our folder.
    """
    return "\n".join(
        [
            listener.replace("{port}", str(port)).rstrip("\n"),
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {state_dir}/",
            "autosave_interval 60",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "",
        ]
    )


def recipe_listener(files_dir: Path, recipe: Path | None = None) -> str:
    """The recipe's configuration as a listener for :class:`LocalMosquitto`: its files in ``files_dir``
    (what ``make-secrets.sh`` puts in ``<DIR>/broker``), its TLS listener on 127.0.0.1 and a free port."""
    recipe = recipe or RECIPE_DIR / "kws.conf"
    text = recipe.read_text()
    for expected in (RECIPE_FILES_DIR, RECIPE_LISTENER_LINE):
        if expected not in text:
            raise ValueError(f"the recipe {recipe} no longer has {expected!r}: update recipe_listener")
    lines = [
        "listener {port} 127.0.0.1" if line.strip() == RECIPE_LISTENER_LINE
        else line.replace(RECIPE_FILES_DIR, str(files_dir))
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


class LocalMosquitto:
    """``mosquitto -c <dir>/mosquitto.conf`` as a child process, restartable on the same port."""

    def __init__(
        self,
        state_dir: Path,
        port: int = 0,
        executable: str | None = None,
        listener: str = OPEN_LISTENER,
        tls: bool = False,
    ) -> None:
        """``listener``: the listener's configuration with ``{port}`` for the port (see :func:`recipe_listener`);
        ``tls``: whether it is a TLS listener, so :attr:`address` is an ``mqtts://`` one."""
        self.executable = executable or find_mosquitto()
        if self.executable is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.address = BrokerAddress("127.0.0.1", port or free_tcp_port(), tls)
        self.config_path = self.state_dir / "mosquitto.conf"
        self.config_path.write_text(mosquitto_config(self.address.port, self.state_dir, listener))
        self.log_path = self.state_dir / "mosquitto.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> LocalMosquitto:
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [self.executable, "-c", str(self.config_path)], stdout=log_file, stderr=subprocess.STDOUT
            )
        self._wait_listening()
        log.info("mosquitto listening on %s (state in %s)", self.address.url, self.state_dir)
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence database, then exits."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}; see {self.log_path}")
            try:
                with socket.create_connection((self.address.host, self.address.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.address.url} within {STARTUP_TIMEOUT_S:.0f} s")

    def __enter__(self) -> LocalMosquitto:
        return self.start()

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()
