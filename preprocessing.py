"""The shared feature pipeline, in numpy alone: what every model, client and service computes.

The implementation is :mod:`kws.features` (re-exported here, so ``import
preprocessing`` gives the whole API); it matches TensorFlow's ``tf.signal``
pipeline numerically (``tests/test_features_parity.py``). Each model's
:class:`FeatureConfig` lives in its metadata. As a command, it shows the features
a model would compute for a clip::

    python preprocessing.py --model models/little clip.wav
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kws.audio import read_clip
from kws.errors import KwsError, blame
from kws.features import *  # noqa: F403 - this module is the feature API's public face
from kws.features import LOG_OFFSET, FeatureConfig, InputStandardization, compute_features  # noqa: F401
from kws.model.metadata import ModelMetadata, metadata_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the features a model computes for each clip.")
    parser.add_argument("clips", nargs="+", type=Path, metavar="CLIP",
                        help="16 kHz mono 16-bit clips (WAV, FLAC or Ogg Opus)")
    parser.add_argument(
        "--model", type=Path, default=Path("models/little"), metavar="STEM",
        help="model whose metadata gives the FeatureConfig (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        with blame(f"--model {args.model}"):
            config = ModelMetadata.read(metadata_path(args.model)).feature_config
        print(f"{args.model}: {config}")
        for path in args.clips:
            features = compute_features(read_clip(path), config)
            print(f"{path}: shape {features.shape}, min {features.min():.3f}, max {features.max():.3f}, "
                  f"mean {float(np.mean(features)):.3f}")
    except KwsError as error:
        parser.exit(error.exit_code, f"error: {error.explain()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
