"""The export step after training Little or Big: what ships in ``little.json`` beside the model.

The cascade threshold (:mod:`kws.tuning.cascade_calibration`) and the stream parameters
(:mod:`kws.tuning.listen_calibration`) are chosen on validation speakers against the Big model
Little will be paired with, so they are calibrated whenever either model changes.
No TensorFlow is needed here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from kws.model.installed import SERVICE_MODEL
from kws.tuning.cascade_calibration import calibrate_export as calibrate_cascade
from kws.tuning.listen_calibration import calibrate_export as calibrate_listening

log = logging.getLogger(__name__)

#: The pair whose calibration ships with the Little model: its cascade threshold and stream parameters.
PAIRED = ("little", SERVICE_MODEL)


def calibrate_pair(models_dir: Path, data_dirs: Sequence[Path]) -> None:
    """The export step after training Little or Big: the threshold and the stream parameters that ship in
    ``little.json``, chosen on validation speakers against the Big model they will be paired with."""
    little, big = (models_dir / name for name in PAIRED)
    cascade = calibrate_cascade(little, big, data_dirs)
    log.info("cascade threshold %.4f written to %s.json", cascade.threshold, little)
    calibrate_listening(little, big, data_dirs)
    log.info("listen section written to %s.json", little)
