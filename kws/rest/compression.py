"""Compressed request bodies: what the Pi saves on every clip it sends, and how the service
refuses a body that would expand without bound.

A SenML audio pack is base64 text, so a quarter of it is base64's overhead, and speech
PCM itself is redundant: deflated, a clip's pack travels as about 59 % of its bytes
(25 KB instead of 43 KB, on the validation clips) and an int8 features pack as about 74 %. The HTTP way to say so
is a request ``Content-Encoding`` (RFC 9110 §8.4), which the service lists in
``GET /health`` (``content_encodings``) so that a client only compresses for a service
that takes it; a service from before answers no list and gets the plain body.

``deflate`` is the zlib format (RFC 1950, as RFC 9110 §8.4.1.2 defines the coding), at
zlib's default level: on a clip the fastest level costs half the CPU (0.8 against 1.5 ms
here, a one-off timing) for 5 % more bytes, and bytes are the Pi's scarcer resource; only the clips Little
is unsure of are sent at all. ``gzip`` is accepted too, for clients whose HTTP libraries
speak only that.

Decompression is bounded by the same byte limit as a plain body: the service never
holds more than ``limit + 1`` decompressed bytes, so a small body that inflates to
gigabytes (a "zip bomb") costs it 64 KiB and a 413.
"""

from __future__ import annotations

import zlib

from kws.errors import KwsError

#: Request codings the service decodes, in the order a client should prefer them.
REQUEST_ENCODINGS = ("deflate", "gzip")
#: What a client may be told to do: compress when the service takes it (auto), always, or never.
COMPRESS_CHOICES = ("auto", "deflate", "none")
#: The zlib level the client compresses at (zlib's own default; see the module docstring).
DEFLATE_LEVEL = 6
#: zlib's window-bits argument for each coding: 15 for the zlib wrapper, 31 for the gzip one.
_WINDOW_BITS = {"deflate": 15, "gzip": 31}


class EncodingError(KwsError, ValueError):
    """A body that is not what its ``Content-Encoding`` says, or one the service does not take."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.http_status = status
        """400 (broken data), 413 (too large once decoded) or 415 (unknown coding)."""


def compress(body: bytes, encoding: str = "deflate", level: int = DEFLATE_LEVEL) -> bytes:
    """``body`` in the coding named (one of :data:`REQUEST_ENCODINGS`)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, _WINDOW_BITS[encoding])
    return compressor.compress(body) + compressor.flush()


def request_encoding(header: str | None) -> str:
    """The one coding a ``Content-Encoding`` header names: "identity" when there is none.

    Stacked codings ("gzip, deflate") are refused rather than unwrapped: no client of
    ours sends them, and each layer would be another expansion to bound.
    """
    value = (header or "").strip().lower()
    if value in ("", "identity"):
        return "identity"
    if value not in REQUEST_ENCODINGS:
        raise EncodingError(
            f"Content-Encoding {value[:60]!r} is not one this service decodes: use one of "
            f"{', '.join(REQUEST_ENCODINGS)}, or none", 415,
        )
    return value


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded, refusing more than ``limit`` decoded bytes while decoding (413), and data
    that is broken, cut short or followed by anything (400)."""
    if encoding == "identity":
        return body
    decoder = zlib.decompressobj(_WINDOW_BITS[encoding])
    try:
        decoded = decoder.decompress(body, limit + 1)
    except zlib.error as error:
        raise EncodingError(f"body is not valid {encoding} data: {error}", 400) from error
    if len(decoded) > limit or decoder.unconsumed_tail:
        raise EncodingError(f"body is over the {limit}-byte limit once {encoding}-decoded", 413)
    if not decoder.eof:
        raise EncodingError(f"{encoding} body is cut short", 400)
    if decoder.unused_data:
        raise EncodingError(f"{len(decoder.unused_data)} bytes follow the end of the {encoding} data", 400)
    return decoded
