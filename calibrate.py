"""Offline work on what ships with the Little model, run from a checkout: ``python calibrate.py --help``.

The cascade threshold (``cascade``), the sweep of every threshold (``sweep``) and the
always-listening parameters (``listen``). The program is :mod:`kws.cli.calibrate` (its
docstring has the examples); ``pip install .`` makes it the command ``kws-calibrate``.
"""

import sys

from kws.cli.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
