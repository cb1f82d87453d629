"""Who a client is to the broker, and how it knows the broker is the real one: accounts and TLS.

The flags follow Mosquitto's own clients (``--username``, ``--cafile``, a client
certificate and its key as ``--certfile``/``--keyfile``) but for one thing: the
password is never given on a command line, where ``ps`` shows it to every user of
the machine. It is read from ``--password-file`` (the first line of the file), only
the file's path is passed on to spawned clients, and the password is kept out of
every ``repr`` and log line.

TLS is on for ``mqtts://`` broker URLs. Without ``--cafile`` the system's CA
certificates are trusted (a managed broker with a public certificate); with it,
only that CA (a private one, as ``deploy/mosquitto/make-secrets.sh`` makes). The
broker's certificate must name the host of the URL: hostname checking is never off.
"""

from __future__ import annotations

import logging
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kws.errors import KwsError
from kws.mqtt.protocol import BrokerAddress

log = logging.getLogger(__name__)


class SecurityError(KwsError, ValueError):
    """Credentials or TLS files that cannot be used; the text names the flag."""


@dataclass(frozen=True)
class BrokerSecurity:
    """An account (user name and password) and the TLS files, all optional."""

    username: str | None = None
    password_file: Path | None = None
    """Where the password came from: what a spawned client is given instead of the password."""
    password: str | None = field(default=None, repr=False, compare=False)
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @classmethod
    def load(
        cls,
        username: str | None = None,
        password_file: Path | None = None,
        cafile: Path | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> BrokerSecurity:
        """Read the password and check the files now, so a mistake is a usage error and not a retry loop."""
        if password_file is not None and not username:
            raise SecurityError("--password-file needs --username: the password belongs to an account")
        if username is not None and not username:
            raise SecurityError("--username must not be empty")
        if (certfile is None) != (keyfile is None):
            raise SecurityError("--certfile and --keyfile go together: a client certificate and its private key")
        security = cls(
            username=username,
            password_file=password_file,
            password=read_password_file(password_file) if password_file is not None else None,
            cafile=cafile,
            certfile=certfile,
            keyfile=keyfile,
        )
        if security.uses_tls_files:
            security.tls_context()  # raises SecurityError for a missing or unusable file
        return security

    @property
    def uses_tls_files(self) -> bool:
        return any(path is not None for path in (self.cafile, self.certfile, self.keyfile))

    def check_for(self, broker: BrokerAddress) -> None:
        """TLS files with a plain-text URL are a mistake: say so rather than send the password in clear."""
        if self.uses_tls_files and not broker.tls:
            raise SecurityError(
                f"--cafile, --certfile and --keyfile are for TLS, but {broker.url} is plain text: "
                f"use mqtts://{broker.host}:<TLS port> in --broker"
            )

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context: the broker's certificate checked against ``cafile`` (or the system's CAs)
        and its host name; our certificate presented when one is given."""
        try:
            context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        except (OSError, ssl.SSLError) as error:
            raise SecurityError(f"--cafile {self.cafile}: {_reason(error)}") from error
        if self.certfile is not None:
            try:
                context.load_cert_chain(str(self.certfile), str(self.keyfile))
            except (OSError, ssl.SSLError) as error:
                raise SecurityError(
                    f"--certfile {self.certfile} / --keyfile {self.keyfile}: {_reason(error)}"
                ) from error
        return context

    def arguments(self) -> list[str]:
        """The same security as command-line flags for a child process: paths, never the password."""
        flags: list[str] = []
        for flag, value in (
            ("--username", self.username), ("--password-file", self.password_file),
            ("--cafile", self.cafile), ("--certfile", self.certfile), ("--keyfile", self.keyfile),
        ):
            if value is not None:
                flags += [flag, str(value)]
        return flags


def read_password_file(path: Path) -> str:
    """The password on the first line of ``path`` (the line break is not part of it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = Path(path).stat().st_mode
    except (OSError, UnicodeDecodeError) as error:
        raise SecurityError(f"--password-file {path}: {_reason(error)}") from error
    password = text.splitlines()[0] if text else ""
    if not password:
        raise SecurityError(f"--password-file {path}: the first line is empty; it must hold the password")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("--password-file %s can be read by other users of this machine (chmod 600 %s)", path, path)
    return password


def _reason(error: BaseException) -> str:
    """An OSError's or SSLError's reason without the errno number."""
    if isinstance(error, ssl.SSLError) and error.reason:
        return f"{error.reason} ({error.library})" if error.library else str(error.reason)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
