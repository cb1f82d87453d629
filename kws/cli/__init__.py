"""The four programs: their flags, checks and exit statuses; the work is in the other sub-packages.

Each module has a ``main(argv)`` that ``pip install`` turns into a command
(``[project.scripts]`` in pyproject.toml) and that the top-level script of the same
program calls from a checkout:

- :mod:`kws.cli.little`: ``kws-little`` = ``little_client.py``, the Pi's Little client and listener;
- :mod:`kws.cli.big`: ``kws-big`` = ``big_service.py``, the Big service;
- :mod:`kws.cli.infer`: ``kws-infer`` = ``inference_client.py``, an MQTT inference client;
- :mod:`kws.cli.coop`: ``kws-coop`` = ``cooperative_client.py``, the cooperative MQTT client.

Nothing here may import numpy before its module sets ``OPENBLAS_NUM_THREADS``.
"""
