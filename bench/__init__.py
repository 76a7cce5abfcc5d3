"""Side-by-side benchmark of storescpd against DCMTK's and pynetdicom's storescp (issue 7).

Run ``python -m bench --help`` from the repository root. Not a test: CI runs only
``tests/integration/test_bench_smoke.py``, a few seconds of ``--quick``.
"""
