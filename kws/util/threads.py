"""One BLAS thread per process, set before numpy loads: what every program and benchmark does first.

The programs work on one clip (or one window) at a time, with small matrix products;
OpenBLAS's own thread pool only adds hand-offs to those, and on top of the Big
service's worker threads it oversubscribes the cores. Measured on two busy cores:
Little's median 9.4 ms with the pool, 0.9 ms with one thread; the Big service's
/predict 13.9 ms with it, 5.5 ms without; a clip's features ~7 ms more (8x the work
itself) whenever another process holds a core. A value already in the environment wins.

OpenBLAS reads the variable once, when numpy is first imported, so a program calls
:func:`one_blas_thread` before it imports anything that imports numpy (this module
imports nothing that does).
"""

from __future__ import annotations

import os

VARIABLE = "OPENBLAS_NUM_THREADS"


def one_blas_thread() -> None:
    """Ask OpenBLAS for one thread, unless the environment already says how many."""
    os.environ.setdefault(VARIABLE, "1")
