"""A shared bearer token between the Pi and the Big service (RFC 6750), read from a file.

The token lives in a file, never on the command line (where ``ps`` shows it to
every user) nor in a log line. The service and the client read it with
:func:`read_token_file`; the service wraps its app in :func:`require_bearer_token`,
which answers 401 with a JSON body (and ``WWW-Authenticate: Bearer``) to a
request for a protected path without the right ``Authorization`` header, and
compares tokens in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from kws.errors import KwsError

log = logging.getLogger(__name__)

#: RFC 6750's b64token: what may stand after ``Bearer``.
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_CHARACTERS = 16


class TokenFileError(KwsError, ValueError):
    """The token file cannot be read or holds no usable token; the message says which."""


def read_token_file(path: Path | str) -> str:
    """The token in ``path``: its first line, stripped. Warns when other users may read the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as error:
        raise TokenFileError(f"cannot read {path}: {error}") from error
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    if not _TOKEN_PATTERN.fullmatch(token):
        raise TokenFileError(
            f"{path} must hold the token on its first line: letters, digits and - . _ ~ + / (RFC 6750), no spaces"
        )
    if len(token) < MIN_TOKEN_CHARACTERS:
        raise TokenFileError(f"the token in {path} has {len(token)} characters; use at least {MIN_TOKEN_CHARACTERS}")
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s can be read by other users; chmod 600 it", path)
    return token


def bearer_header(token: str) -> dict[str, str]:
    """The request header that carries ``token``."""
    return {"Authorization": f"Bearer {token}"}


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def require_bearer_token(app: WsgiApp, token: str, protected_paths: Sequence[str]) -> WsgiApp:
    """``app`` with ``protected_paths`` answered 401 unless the request carries ``Bearer <token>``."""
    expected = f"Bearer {token}".encode()
    protected = frozenset(protected_paths)

    def guarded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") not in protected:
            return app(environ, start_response)
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        problem = "no Authorization header" if not given else "the bearer token is not the service's"
        body = json.dumps({"error": f"{problem}: send 'Authorization: Bearer <token>'", "status": 401}).encode()
        challenge = 'Bearer realm="kws-big-service"' + (', error="invalid_token"' if given else "")
        start_response("401 Unauthorized", [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("WWW-Authenticate", challenge),
        ])
        return [body]

    return guarded_app
