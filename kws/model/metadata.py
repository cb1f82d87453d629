"""The model metadata schema, read and written here only.

``models/<name>.json`` is the one source of truth about a model: its label order,
the :class:`~kws.features.FeatureConfig` its features are made with, any input
standardisation, the pretrained front end it stands on, if any
(:class:`~kws.frontend.spec.FrontEndSpec`: package, version and sha256 of its graphs),
its files with their sha256, how it was trained and what it measured. Training writes
it with :func:`build_metadata` and :func:`write_metadata` at export; every client reads
it with :meth:`ModelMetadata.read`, so training and inference cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kws.errors import KwsError
from kws.features import FeatureConfig, InputStandardization
from kws.frontend.spec import FrontEndError, FrontEndSpec

_MODEL_SUFFIXES = (".tflite.zlib", ".tflite", ".json")
#: What a model outputs: class probabilities (a softmax ends the graph) or logits.
OUTPUTS = ("probabilities", "logits")


class ModelError(KwsError):
    """A model that cannot be found, read or trusted (e.g. a sha256 mismatch)."""


@dataclass(frozen=True)
class ModelMetadata:
    """What ``models/<name>.json`` says about a model; the single source of truth."""

    name: str
    labels: tuple[str, ...]
    feature_config: FeatureConfig | None
    """The features the model reads; None for a head on the pretrained front end (``front_end``)."""
    files: dict[str, str]
    sha256: dict[str, str]
    raw: dict[str, Any] = field(repr=False)
    input_standardization: InputStandardization | None = field(default=None, repr=False)
    """What full-integer models expect done to their features first (see preprocessing)."""
    front_end: FrontEndSpec | None = field(default=None, repr=False)
    """The pretrained front end the model's head reads; None for models on our own features."""

    def __post_init__(self) -> None:
        if (self.feature_config is None) == (self.front_end is None):
            raise ValueError("a model reads either features (feature_config) or the pretrained front end "
                             "(front_end): exactly one of the two")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One clip's input to the TFLite file: features (frames, bins), or what it reads of the front end
        (:attr:`FrontEndSpec.model_input_shape`: embeddings (windows, 96), or the mel windows)."""
        if self.front_end is not None:
            return self.front_end.model_input_shape
        return self.feature_config.shape

    @classmethod
    def read(cls, path: Path) -> ModelMetadata:
        try:
            raw = json.loads(path.read_text())
            return cls(
                name=raw["name"],
                labels=tuple(raw["labels"]),
                feature_config=(FeatureConfig.from_dict(raw["feature_config"])
                                if raw.get("feature_config") is not None else None),
                files=dict(raw["files"]),
                sha256=dict(raw["sha256"]),
                raw=raw,
                input_standardization=(
                    InputStandardization.from_dict(raw["input_standardization"])
                    if "input_standardization" in raw
                    else None
                ),
                front_end=FrontEndSpec.from_dict(raw["front_end"]) if "front_end" in raw else None,
            )
        except FileNotFoundError as error:
            raise ModelError(f"no model metadata at {path}") from error
        except FrontEndError as error:
            raise ModelError(f"{path}: {error}") from error
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{path}: malformed model metadata ({error})") from error


def model_stem(path: Path | str) -> Path:
    """``models/little.tflite.zlib`` -> ``models/little``; a bare stem passes through."""
    text = str(path)
    for suffix in _MODEL_SUFFIXES:
        if text.endswith(suffix):
            return Path(text[: -len(suffix)])
    return Path(text)


def metadata_path(path: Path | str) -> Path:
    """The metadata file of a model given by stem or by any of its files."""
    stem = model_stem(path)
    return stem.with_name(stem.name + ".json")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_metadata(
    *,
    name: str,
    description: str,
    labels: list[str],
    feature_config: FeatureConfig | None,
    input_standardization: InputStandardization | None,
    architecture: Mapping[str, Any],
    training: Mapping[str, Any],
    accuracy: Mapping[str, Any],
    blobs: Mapping[str, tuple[str, bytes]],
    output: str = "probabilities",
    front_end: FrontEndSpec | None = None,
) -> dict[str, Any]:
    """The metadata document of an exported model; ``blobs`` maps a file kind
    ('tflite', 'tflite_zlib') to its file name and bytes. ``front_end`` is the pretrained
    front end a head stands on; its graphs' hashes go in its own block, not in ``sha256``,
    because the graphs are not the model's files (the installed package ships them)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if (feature_config is None) == (front_end is None):
        raise ValueError("give feature_config for a model on features, or front_end for a head on the front end")
    return {
        "name": name,
        "description": description,
        "labels": list(labels),
        "feature_config": feature_config.to_dict() if feature_config is not None else None,
        "input_shape": list(feature_config.shape if feature_config is not None else front_end.model_input_shape),
        "output": output,
        **({"input_standardization": input_standardization.to_dict()} if input_standardization else {}),
        **({"front_end": front_end.to_dict()} if front_end else {}),
        "architecture": dict(architecture),
        "training": dict(training),
        "accuracy": dict(accuracy),
        "files": {kind: filename for kind, (filename, _) in blobs.items()},
        "sizes": {kind: len(blob) for kind, (_, blob) in blobs.items()},
        "sha256": {kind: sha256_hex(blob) for kind, (_, blob) in blobs.items()},
    }


def write_metadata(output_dir: Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``<output_dir>/<name>.json``; the document is checked by reading it back."""
    path = output_dir / f"{metadata['name']}.json"
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    ModelMetadata.read(path)
    return path


#: Sections added after training by calibration steps that need the trained model (and, for the
#: cascade, its Big partner): each is written by its owner and read by the clients that need it.
CALIBRATED_SECTIONS = ("cascade", "listen")


def write_section(path: Path, name: str, section: Mapping[str, Any]) -> None:
    """Add or replace one calibrated section of a model's metadata, keeping everything else as it is.

    The sha256 entries cover the model files, not this JSON, so calibrating never invalidates a model.
    """
    if name not in CALIBRATED_SECTIONS:
        raise ValueError(f"unknown metadata section {name!r}; expected one of {CALIBRATED_SECTIONS}")
    document = json.loads(path.read_text())
    document[name] = dict(section)
    path.write_text(json.dumps(document, indent=2) + "\n")
    ModelMetadata.read(path)


def copy_with_section(metadata: Mapping[str, Any], path: Path, name: str, section: Mapping[str, Any]) -> None:
    """Write a copy of a model's metadata to ``path`` with one calibrated section replaced.

    The copy names the same model files, relative to its own folder, so it must sit
    beside them: ``load_model(path)`` then loads the same model with the new section.
    """
    path = Path(path)
    missing = [file for file in dict(metadata.get("files", {})).values() if not (path.parent / file).is_file()]
    if missing:
        raise ModelError(f"{path}: the model files {missing} are not beside it; write the copy in their folder")
    path.write_text(json.dumps(dict(metadata), indent=2) + "\n")
    write_section(path, name, section)
