"""Inference clients as child processes: started together, watched, stopped together.

The cooperative client's ``--spawn`` and the benchmark start one
``inference_client.py`` per model with the same Python, so the whole ensemble is
one command; the fleet is a context manager so the children are stopped on the
way out however that happens (end of run, error, Ctrl-C).

Children get the broker's account and TLS flags as files (``--password-file``,
never the password: a command line is visible to every user of the machine). By
default every child uses the fleet's; a :class:`ClientSpec` may carry its own
account, as a broker whose ACL gives each inference client its own identity needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kws.errors import KwsError
from kws.mqtt.protocol import BrokerAddress
from kws.mqtt.security import BrokerSecurity

log = logging.getLogger(__name__)

#: The user-facing command, run as a child process (never imported): the same program a user
#: starts by hand on another machine (``kws-infer``, ``inference_client.py``), run as a module so
#: that it works from a checkout and from an installed package alike.
INFERENCE_CLIENT = ("-m", "kws.cli.infer")
#: The folder that holds this ``kws`` package: put first on the children's path, so they run the
#: same code as the parent wherever it was started from.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 10.0
#: The TFLite runtime prints this once per interpreter from C, whatever the log level; with
#: several children it would repeat in the user's terminal for no information.
NOISE = ("Created TensorFlow Lite XNNPACK delegate",)


class FleetError(KwsError, RuntimeError):
    """An inference client exited while it was needed."""


@dataclass(frozen=True)
class ClientSpec:
    """One child: which model, under which name, with which extra options."""

    model: str
    name: str
    extra_args: tuple[str, ...] = ()
    security: BrokerSecurity | None = None
    """This child's account and TLS files (None: the fleet's)."""


def specs_for_models(models: Sequence[str], extra_args: Sequence[str] = ()) -> list[ClientSpec]:
    """One client per model path, named after the path's last part (``models/ensemble_1`` -> ``ensemble_1``).

    A model given twice gets a numbered name, so client names stay unique.
    """
    specs = []
    for index, model in enumerate(models):
        name = Path(model).name.split(".")[0]
        if any(spec.name == name for spec in specs):
            name = f"{name}-{index}"
        specs.append(ClientSpec(model, name, tuple(extra_args)))
    return specs


class InferenceFleet:
    """Child ``inference_client.py`` processes connected to one broker."""

    def __init__(
        self,
        specs: Sequence[ClientSpec],
        broker: BrokerAddress,
        topic_prefix: str,
        mqtt_version: str,
        qos: int,
        log_dir: Path | None = None,
        log_level: str = "INFO",
        security: BrokerSecurity | None = None,
    ) -> None:
        self.specs = list(specs)
        self.common_args = [
            "--broker", broker.url, "--topic-prefix", topic_prefix,
            "--mqtt-version", mqtt_version, "--qos", str(qos), "--log-level", log_level,
        ]
        self.security = security or BrokerSecurity()
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> InferenceFleet:
        for spec in self.specs:
            security = spec.security or self.security
            command = [sys.executable, *INFERENCE_CLIENT, "--model", spec.model, "--name", spec.name,
                       *self.common_args, *security.arguments(), *spec.extra_args]
            with self._log_file(spec.name) as output:  # the child keeps its own descriptor
                process = subprocess.Popen(
                    command, stdout=output or subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=_child_environment(),
                )
            self.processes[spec.name] = process
            if output is None:
                threading.Thread(
                    target=_relay, args=(process, spec.name), name=f"relay-{spec.name}", daemon=True
                ).start()
            log.info("started inference client %s (pid %d) for %s", spec.name, self.processes[spec.name].pid,
                     spec.model)
        return self

    def _log_file(self, name: str) -> contextlib.AbstractContextManager[IO[bytes] | None]:
        """``<log_dir>/<name>.log``, or None (the child's lines are relayed to our stderr, named)."""
        if self.log_dir is None:
            return contextlib.nullcontext()
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            return open(self.log_dir / f"{name}.log", "wb")
        except OSError as error:
            raise FleetError(f"cannot write the inference clients' logs in {self.log_dir}: {error}") from error

    def check_alive(self) -> None:
        """Raise :class:`FleetError` naming every child that has exited."""
        exited = {name: process.returncode for name, process in self.processes.items() if process.poll() is not None}
        if exited:
            where = f"; see {self.log_dir}" if self.log_dir else ""
            raise FleetError(f"inference client(s) exited: {exited}{where}")

    def kill(self, name: str) -> None:
        """SIGKILL one client, as a crash would (no offline status: the broker sends its will)."""
        process = self.processes[name]
        process.kill()
        process.wait()

    def stop(self) -> None:
        """SIGTERM every child (they announce themselves offline), SIGKILL those that hang."""
        running = [process for process in self.processes.values() if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("inference client pid %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()

    def __enter__(self) -> InferenceFleet:
        return self.start()

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


def _relay(process: subprocess.Popen, name: str) -> None:
    """Copy a child's output to our stderr (stdout carries reports), each line prefixed with its name."""
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if not any(noise in line for noise in NOISE):
            sys.stderr.write(f"[{name}] {line}\n")


def _child_environment() -> dict[str, str]:
    """This process's environment with :data:`PACKAGE_ROOT` first on ``PYTHONPATH``."""
    paths = [str(PACKAGE_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
