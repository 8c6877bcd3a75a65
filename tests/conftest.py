"""Test configuration: one BLAS / torch thread (the CI cores are shared), Agg backend."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

_limits = threadpool_limits(limits=1)

try:  # torch is optional
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    torch = None


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
