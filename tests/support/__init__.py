"""What only the tests need beside the package: fakes and local servers (``from support.NAME import ...``).

A fake a benchmark uses too stays in ``bench/`` (a benchmark never imports from ``tests/``):
``bench/broken_big.py``, ``bench/forger.py`` and ``bench/hostile_requests.py``.
"""
