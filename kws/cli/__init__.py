"""The programs: their flags, checks and exit statuses; the work is in the other sub-packages.

Each program module has a ``main(argv)`` that ``pip install`` turns into a command
(``[project.scripts]`` in pyproject.toml) and that the top-level script of the same
program calls from a checkout. The runtime, four programs:

- :mod:`kws.cli.little`: ``kws-little`` = ``little_client.py``, the Pi's Little client and listener;
- :mod:`kws.cli.big`: ``kws-big`` = ``big_service.py``, the Big service;
- :mod:`kws.cli.infer`: ``kws-infer`` = ``inference_client.py``, an MQTT inference client;
- :mod:`kws.cli.coop`: ``kws-coop`` = ``cooperative_client.py``, the cooperative MQTT client;

and the offline work on what ships with the Little model, which none of them loads:

- :mod:`kws.cli.calibrate`: ``kws-calibrate`` = ``calibrate.py``, the cascade threshold, the
  sweep and the listening parameters (:mod:`kws.tuning`).

A program turns its flags into the package's own settings (frozen dataclasses) and catches
:class:`~kws.errors.KwsError` once, naming the flag to fix (:func:`~kws.errors.blame`). Each
calls :func:`kws.util.threads.one_blas_thread` before anything imports numpy.
"""
