"""deploy/nginx's recipe as a private nginx instance: its own prefix folder, free port, in the foreground.

For the recipe's test (``tests/rest/test_nginx_recipe.py``) and anyone who wants
to try it without touching the system's nginx: the site file is
``deploy/nginx/kws-big.conf`` itself, its ``${KWS_...}`` placeholders filled in,
inside ``deploy/nginx/standalone.conf``. The system's nginx, its configuration
and its pid file are never used.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import time
from pathlib import Path

from kws.util.net import free_tcp_port

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
SITE_TEMPLATE = RECIPE_DIR / "kws-big.conf"
MAIN_TEMPLATE = RECIPE_DIR / "standalone.conf"
EXECUTABLES = ("nginx", "/usr/sbin/nginx")
STARTUP_TIMEOUT_S = 10.0


def find_nginx() -> str | None:
    """The nginx executable, or None when it is not installed (``apt-get install nginx``)."""
    for candidate in EXECUTABLES:
        if found := shutil.which(candidate):
            return found
    return None


def fill(template: Path, values: dict[str, str]) -> str:
    """``template`` with its ``${KWS_...}`` placeholders replaced; nginx's own ``$variables`` are left alone."""
    text = string.Template(template.read_text()).safe_substitute(values)
    missing = sorted({name for name in string.Template(text).get_identifiers() if name.startswith("KWS_")})
    if missing:
        raise ValueError(f"{template}: no value for {missing}")
    return text


class LocalNginx:
    """nginx in front of ``upstreams`` ("host:port" each), serving HTTPS on a free loopback port."""

    def __init__(self, prefix: Path, upstreams: list[str], certfile: Path, keyfile: Path, port: int = 0) -> None:
        self.executable = find_nginx()
        if self.executable is None:
            raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
        if len(upstreams) != 2:
            raise ValueError("the recipe has two replicas; add server lines to kws-big.conf for more")
        self.prefix = Path(prefix)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = port or free_tcp_port()
        site = self.prefix / "kws-big.conf"
        site.write_text(fill(SITE_TEMPLATE, {
            "KWS_BIG_1": upstreams[0], "KWS_BIG_2": upstreams[1], "KWS_LISTEN": f"127.0.0.1:{self.port}",
            "KWS_SERVER_NAME": "localhost", "KWS_CERT": str(certfile), "KWS_KEY": str(keyfile),
        }))
        self.config = self.prefix / "nginx.conf"
        # As root, nginx's workers would switch to "nobody", who cannot enter a private temporary folder.
        user = "user root;" if os.geteuid() == 0 else ""
        self.config.write_text(fill(MAIN_TEMPLATE, {"KWS_PREFIX": str(self.prefix), "KWS_SITE": str(site),
                                                    "KWS_USER": user}))
        self.url = f"https://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self) -> LocalNginx:
        command = [self.executable, "-p", str(self.prefix), "-c", str(self.config), "-g", "daemon off;"]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refuses {self.config}: {check.stderr.strip()}")
        with open(self.prefix / "stderr.log", "ab") as stderr:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._process.returncode}: {self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.info("nginx listening on %s (prefix %s)", self.url, self.prefix)
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.url} within {STARTUP_TIMEOUT_S:.0f} s")

    def error_log(self) -> str:
        """The end of what nginx said (its error log and its standard error)."""
        paths = (self.prefix / "stderr.log", self.prefix / "error.log")
        return "\n".join(path.read_text()[-2000:] for path in paths if path.exists())

    def stop(self) -> None:
        """SIGQUIT: nginx finishes the requests in progress, then exits."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGQUIT)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> LocalNginx:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
