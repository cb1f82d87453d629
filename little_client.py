"""The Little half of the Big/Little cascade and the always-on listener, run from a checkout:
``python little_client.py --help``.

The program is :mod:`kws.cli.little` (its docstring has the examples); ``pip install .`` makes it
the command ``kws-little``.
"""

import sys

from kws.cli.little import main

if __name__ == "__main__":
    sys.exit(main())
