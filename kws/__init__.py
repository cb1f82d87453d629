"""Edge keyword spotting that cooperates with the cloud.

The package is laid out by concern; the tree is the architecture. The runtime, what the
four programs (``little_client.py``, ``big_service.py``, ``inference_client.py``,
``cooperative_client.py``) load to do their job, reads end to end:

- :mod:`kws.cli`: the programs themselves: their flags, checks and exit statuses.
- :mod:`kws.audio`, :mod:`kws.features`: WAV clips at 16 kHz and the numpy feature
  pipeline every model, client and service shares (``preprocessing.py`` re-exports it).
- :mod:`kws.frontend`: the pretrained front end's mel in numpy (the Pi) and its graphs (the server).
- :mod:`kws.model`: loading and running a TFLite model, and its metadata schema,
  the one source of labels, features and thresholds.
- :mod:`kws.wire`: what crosses the network: SenML (RFC 8428), audio, features and mel packs.
- :mod:`kws.rest`: the Big service, its client and its HTTP metrics.
- :mod:`kws.cascade`: the Big/Little rule and the Little client's run over clips.
- :mod:`kws.listen`: always listening: a stream's windows, the detector, Big confirming.
- :mod:`kws.mqtt`: cooperative inference: topics, connection, inference clients,
  the ensemble tracker and its combine policies, brokers and the spawned fleet.
- :mod:`kws.data`: Speech Commands clips on disk, speaker-disjoint splits, download.
- :mod:`kws.errors`: the one root of the project's exceptions, with an exit code and an HTTP status.
- :mod:`kws.util`: small helpers with no project knowledge (logging, threads, free ports, finite numbers).

What tunes and proves the runtime, offline, never loaded by those four programs:

- :mod:`kws.tuning`: the cascade threshold and the listening parameters chosen, every threshold
  swept, labelled streams built and scored (``calibrate.py``).
- :mod:`kws.training`: recipes, architectures, augmentation, export, TF reference
  features (TensorFlow lives here only).
- :mod:`kws.evaluation`: accuracy of a model on clips, confusion matrices.
"""
