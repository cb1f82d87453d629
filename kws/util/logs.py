"""Logging to stderr for a terminal, a file or the systemd journal; progress bars for terminals only.

Every program logs one line per event to stderr. On a terminal or into a file each line
starts with the time; when stderr is the journal (a systemd service), journald stamps
every line itself, so the time is left out and ``journalctl -u kws-little`` shows it
once. systemd says where a service's stderr goes in ``JOURNAL_STREAM`` (the device and
inode of the journal's socket), which is compared with stderr itself: a program started
from a service that redirects its stderr elsewhere still gets the time.

Progress bars (tqdm) redraw one line with carriage returns, which a journal or a log file
keeps as one long line per redraw: :func:`progress_wanted` is false there.
"""

from __future__ import annotations

import logging
import os
import sys

#: The format on a terminal or a file, and in the journal (no time: journald adds it).
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"


def stderr_is_journal() -> bool:
    """Whether stderr is the systemd journal's stream (``JOURNAL_STREAM`` names its device:inode)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(sys.stderr.fileno())
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):  # unset or malformed, or no stderr at all
        return False


def setup_logging(level: int | str = logging.INFO) -> None:
    """``logging.basicConfig`` to stderr, with the time unless stderr is the journal."""
    logging.basicConfig(level=level, format=JOURNAL_FORMAT if stderr_is_journal() else FORMAT, stream=sys.stderr)


def progress_wanted(asked: bool = True) -> bool:
    """Whether to draw progress bars: when ``asked`` (no ``--no-progress``) and stderr is a terminal."""
    try:
        return asked and sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False
