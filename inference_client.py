"""An MQTT inference client: one model answering every clip it is sent, run from a checkout:
``python inference_client.py --help``.

The program is :mod:`kws.cli.infer` (its docstring has the examples); ``pip install .`` makes it
the command ``kws-infer``.
"""

import sys

from kws.cli.infer import main

if __name__ == "__main__":
    sys.exit(main())
