"""The one root of the project's exceptions, and what an edge needs to know to report one.

Every exception the package raises on purpose derives from :class:`KwsError`, beside the
builtin base its callers may catch it as (``AudioError`` is also a ``ValueError``). So an
edge catches one class, not a list that grows with the package:

- a program (``kws.cli``) logs ``str(error)`` and exits with :attr:`KwsError.exit_code`;
- the Big service (``kws.rest.service``) answers :attr:`KwsError.http_status`, the JSON
  error's text being :meth:`KwsError.http_message`.

The defaults are those of most errors: a problem the user can fix (exit status 2, as
argparse's usage errors) that the service did not expect (500: a bug; its log has the
traceback). A class changes what differs, e.g. a malformed pack is a 400 or a 422.
"""

from __future__ import annotations


class KwsError(Exception):
    """An error the project raises on purpose; its message says what is wrong and, where it can, what to do."""

    exit_code: int = 2
    """The exit status of a program that stops on this error (2, as argparse's usage errors)."""
    http_status: int = 500
    """The HTTP status the Big service answers for it (500: the service did not expect it)."""
    http_prefix: str = ""
    """What the error means to a client that sent the request, put before the message in the JSON error."""

    def http_message(self) -> str:
        """The ``error`` of the service's JSON answer: :attr:`http_prefix`, then the message."""
        return f"{self.http_prefix}: {self}" if self.http_prefix else str(self)
