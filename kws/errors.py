"""The one root of the project's exceptions, and what an edge needs to know to report one.

Every exception the package raises on purpose derives from :class:`KwsError`, beside the
builtin base its callers may catch it as (``AudioError`` is also a ``ValueError``). So an
edge catches one class, not a list that grows with the package:

- a program (``kws.cli``) prints ``error: `` and :meth:`KwsError.explain`, and exits with
  :attr:`KwsError.exit_code`; what the user gave that the error is about (a flag and its
  value) is named by the program, around the call, with :func:`blame`;
- the Big service (``kws.rest.service``) answers :attr:`KwsError.http_status`, the JSON
  error's text being :meth:`KwsError.explain` too.

The defaults are those of most errors: a problem the user can fix (exit status 2, as
argparse's usage errors) that the service did not expect (500: a bug; its log has the
traceback). A class changes what differs, e.g. a malformed pack is a 400 or a 422.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class KwsError(Exception):
    """An error the project raises on purpose; its message says what is wrong and, where it can, what to do."""

    exit_code: int = 2
    """The exit status of a program that stops on this error (2, as argparse's usage errors)."""
    http_status: int = 500
    """The HTTP status the Big service answers for it (500: the service did not expect it)."""
    summary: str = ""
    """What the error means, in a few words said before its message (e.g. "not a valid SenML pack")."""
    where: str | None = None
    """What the user gave that the error is about (e.g. "--model models/little"), set by :func:`blame`."""

    def explain(self) -> str:
        """The whole line for a person: :attr:`where` and :attr:`summary` (those there are), then the message."""
        lead = " ".join(part for part in (self.where, self.summary) if part)
        return f"{lead}: {self}" if lead else str(self)


@contextlib.contextmanager
def blame(where: str, *kinds: type[KwsError]) -> Iterator[None]:
    """Errors of ``kinds`` (every :class:`KwsError` when none is named) raised inside are about ``where``.

    How a program names the flag to fix without the package knowing its flags, and still catches one
    class, once, at its edge. An error already blamed keeps its :attr:`~KwsError.where` (the nearest wins).
    """
    caught = kinds or (KwsError,)
    try:
        yield
    except caught as error:
        if error.where is None:
            error.where = where
        raise
