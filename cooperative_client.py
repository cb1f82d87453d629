"""Cooperative inference over MQTT: several models answer each clip, run from a checkout:
``python cooperative_client.py --help``.

The program is :mod:`kws.cli.coop` (its docstring has the examples); ``pip install .`` makes it
the command ``kws-coop``.
"""

import sys

from kws.cli.coop import main

if __name__ == "__main__":
    sys.exit(main())
