"""Edge keyword spotting that cooperates with the cloud.

The package is laid out by concern; the tree is the architecture:

- :mod:`kws.audio`, :mod:`kws.features`: WAV clips at 16 kHz and the numpy feature
  pipeline every model, client and service shares (``preprocessing.py`` re-exports it).
- :mod:`kws.model`: loading and running a TFLite model, and its metadata schema,
  the one source of labels, features and thresholds.
- :mod:`kws.wire`: what crosses the network: SenML (RFC 8428), audio and features packs.
- :mod:`kws.rest`: the Big service, its client and its HTTP metrics.
- :mod:`kws.cascade`: the Big/Little rule, its calibration, sweep and runs.
- :mod:`kws.mqtt`: cooperative inference: topics, connection, inference clients,
  the ensemble tracker and its combine policies, brokers and the spawned fleet.
- :mod:`kws.data`: Speech Commands clips on disk, speaker-disjoint splits, download.
- :mod:`kws.training`: recipes, architectures, augmentation, export, TF reference
  features (TensorFlow lives here only).
- :mod:`kws.evaluation`: accuracy of a model on clips, confusion matrices.
- :mod:`kws.util`: small helpers with no project knowledge (free ports, finite numbers).
"""
