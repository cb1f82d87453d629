"""Always listening: keyword spotting on a live stream, with Big confirming what Little is unsure of.

A source (:mod:`~kws.listen.source`: a WAV file, raw PCM on stdin, a microphone) gives
hops of audio; :mod:`~kws.listen.stream` turns each hop into only its new feature
frames and Little's probabilities for the latest one-second window;
:mod:`~kws.listen.detector` smooths them, applies the threshold and the quiet time
after a detection; :mod:`~kws.listen.confirm` asks Big about detections in Little's
uncertain band; :mod:`~kws.listen.listener` runs that loop and
:mod:`~kws.listen.report` sums it up. The parameters live in the Little model's
metadata (``listen`` section, :mod:`~kws.listen.params`), chosen offline on validation
speakers (``calibrate.py listen``: :mod:`kws.tuning`), which replays this package's own
classes; nothing here imports the tuning side.
"""
