"""Run each notebook as one test (nbmake) under a wall-clock limit, one thread per kernel.

The kernels inherit this process's environment, so setting the thread count here keeps the
two pytest-xdist workers from fighting over the two cores of a CI machine.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

NOTEBOOK_TIMEOUT_S = (
    240  # each notebook runs in under 2 minutes on 2 CPU cores; twice that is a hang
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.timeout(NOTEBOOK_TIMEOUT_S))
