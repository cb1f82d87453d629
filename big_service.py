"""The Big service: the Big model over HTTP, run from a checkout: ``python big_service.py --help``.

The program is :mod:`kws.cli.big` (its docstring has the examples); ``pip install .`` makes it
the command ``kws-big``.
"""

import sys

from kws.cli.big import main

if __name__ == "__main__":
    sys.exit(main())
