"""Request-body codings: both codings round-trip, and every way a body can lie about itself is refused
with the status the service answers, before it costs more than the limit in memory."""

from __future__ import annotations

import gzip
import zlib

import pytest

from kws.rest import compression
from kws.rest.compression import EncodingError

BODY = b'[{"bn":"urn:dev:kws:test:","n":"audio","vd":"' + b"AAEC" * 5_000 + b'"}]'


@pytest.mark.parametrize("encoding", compression.REQUEST_ENCODINGS)
def test_each_coding_round_trips(encoding: str) -> None:
    coded = compression.compress(BODY, encoding)
    assert len(coded) < len(BODY)
    assert compression.decompress(coded, encoding, limit=len(BODY)) == BODY


def test_the_codings_are_the_standard_formats() -> None:
    """deflate is the zlib format (RFC 9110 §8.4.1.2) and gzip the gzip file format: any library reads them."""
    assert zlib.decompress(compression.compress(BODY, "deflate")) == BODY
    assert gzip.decompress(compression.compress(BODY, "gzip")) == BODY
    assert compression.decompress(gzip.compress(BODY), "gzip", limit=len(BODY)) == BODY


def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_is_413() -> None:
    coded = compression.compress(BODY)
    assert compression.decompress(coded, "deflate", limit=len(BODY)) == BODY
    with pytest.raises(EncodingError, match=f"over the {len(BODY) - 1}-byte limit") as caught:
        compression.decompress(coded, "deflate", limit=len(BODY) - 1)
    assert caught.value.http_status == 413


def test_a_bomb_is_refused_without_inflating_it() -> None:
    bomb = compression.compress(b"\0" * 200_000_000)  # 200 MB in about 200 KB
    with pytest.raises(EncodingError) as caught:
        compression.decompress(bomb, "deflate", limit=65_536)
    assert caught.value.http_status == 413


@pytest.mark.parametrize(
    ("coded", "complaint"),
    [
        (b"\x78\x9c garbage", "not valid deflate data"),
        (compression.compress(BODY)[:-6], "cut short"),
        (compression.compress(BODY) + b"\0", "1 bytes follow the end"),
        (compression.compress(BODY, "gzip"), "not valid deflate data"),  # gzip data labelled deflate
    ],
)
def test_broken_data_is_400(coded: bytes, complaint: str) -> None:
    with pytest.raises(EncodingError, match=complaint) as caught:
        compression.decompress(coded, "deflate", limit=len(BODY))
    assert caught.value.http_status == 400


@pytest.mark.parametrize(("header", "coding"), [(None, "identity"), ("", "identity"), ("identity", "identity"),
                                                (" DEFLATE ", "deflate"), ("gzip", "gzip")])
def test_the_header_names_one_coding(header: str | None, coding: str) -> None:
    assert compression.request_encoding(header) == coding


@pytest.mark.parametrize("header", ["br", "x-gzip", "gzip, deflate", "deflate;q=1", "zstd"])
def test_other_and_stacked_codings_are_415(header: str) -> None:
    with pytest.raises(EncodingError, match="deflate, gzip") as caught:
        compression.request_encoding(header)
    assert caught.value.http_status == 415


def test_identity_is_passed_through_untouched() -> None:
    assert compression.decompress(BODY, "identity", limit=1) is BODY  # the plain body's limit is checked before
