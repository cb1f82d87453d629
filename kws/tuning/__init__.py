"""What tunes and proves the runtime, offline; the programs a Pi or a server runs never import it.

The runtime (:mod:`kws.cascade`, :mod:`kws.listen`) applies the threshold and the stream
parameters that ship in the Little model's metadata; this package chooses them on validation
speakers and measures how they fare, with the runtime's own code:

- :mod:`~kws.tuning.cascade_calibration`: the cascade's threshold;
- :mod:`~kws.tuning.cascade_sweep`: every threshold's accuracy and bytes, as a table and a plot;
- :mod:`~kws.tuning.listen_calibration`: the always-listening parameters;
- :mod:`~kws.tuning.stream_synthesis`: labelled streams built from real clips;
- :mod:`~kws.tuning.stream_scoring`: detections judged against such a stream;
- :mod:`~kws.tuning.stream_replay`: a stream heard once, replayed under many parameters;
- :mod:`~kws.tuning.stream_trial`: a stream through the live listener, scored;
- :mod:`~kws.tuning.stream_demo`: the demo's listening part.
"""
