"""Datasets for the training experiments, all offline.

- ``mnist1d``: generated procedurally by the ``mnist1d`` package's ``make_dataset`` with a seeded
  configuration (its ``get_dataset`` would download; it is never called), cached as ``.npz`` in
  the user cache directory (``$ISOMETRY_CACHE``, else ``platformdirs.user_cache_dir("isometry")``);
  the cache file name is a hash of the generation arguments.
- ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 64 features), a fixed seeded
  80/20 split, standardised per feature with the training statistics.
- ``cifar10``: the standard CIFAR-10 python-pickle batches (``data_batch_1`` ... ``data_batch_5``,
  ``test_batch``) in a local directory, read with a restricted unpickler (builtins containers and
  numpy arrays only, nothing else can be constructed), standardised per feature (3072 pixels)
  with the training mean and standard deviation.

Every loader returns a :class:`Dataset` of float32 features and int64 labels.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
from dataclasses import dataclass

import numpy as np

from .._io import atomic_write_bytes
from .config import DATASETS
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


@dataclass(frozen=True)
class Dataset:
    """Train/test arrays: ``x_*`` float32 of shape (n, d), ``y_*`` int64 in [0, n_classes)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"n_classes={self.n_classes})"
        )


def cache_dir() -> str:
    """The directory for cached generated data: ``$ISOMETRY_CACHE``, else
    ``platformdirs.user_cache_dir("isometry")``."""
    env = os.environ.get("ISOMETRY_CACHE")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    import platformdirs

    return platformdirs.user_cache_dir("isometry")


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (x - mean) / std with the training statistics (constant features: std 1)."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    f = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return f(x_train), f(x_test)


# ----------------------------------------------------------------------------- mnist1d
def mnist1d_args(num_samples: int = 10000, seed: int = 0) -> dict:
    """The generation arguments: the package defaults with ``num_samples`` and ``seed`` set."""
    if int(num_samples) < 10:
        raise ValueError(f"num_samples must be an integer >= 10 (one per class), got {num_samples!r}")
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args["num_samples"] = int(num_samples)
    args["seed"] = int(seed)
    return args


def load_mnist1d(num_samples: int = 10000, seed: int = 0, *, cache: bool = True) -> Dataset:
    """MNIST-1D (40 features, 10 classes), generated with ``mnist1d.data.make_dataset``.

    ``num_samples`` examples in total, 80% for training; ``seed`` seeds the generator. The
    global ``random``/``numpy.random`` state that ``make_dataset`` reseeds is restored afterwards.
    The result is cached in :func:`cache_dir` (written atomically; a corrupt cache file is
    regenerated).
    """
    try:
        from mnist1d.data import ObjectView, make_dataset
    except ImportError as exc:  # pragma: no cover
        raise ImportError('the mnist1d dataset needs the mnist1d package: pip install "isometry[data]"') from exc
    args = mnist1d_args(num_samples, seed)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"mnist1d-{key}.npz")
    if cache and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
            return _mnist1d_dataset(arrays)
        except (OSError, ValueError, KeyError):
            pass  # corrupt cache: regenerate below
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = {
        "x": np.asarray(d["x"], dtype=np.float32),
        "y": np.asarray(d["y"], dtype=np.int64),
        "x_test": np.asarray(d["x_test"], dtype=np.float32),
        "y_test": np.asarray(d["y_test"], dtype=np.int64),
    }
    if cache:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
    return _mnist1d_dataset(arrays)


def _mnist1d_dataset(a: dict) -> Dataset:
    return Dataset("mnist1d", a["x"].astype(np.float32), a["y"].astype(np.int64),
                   a["x_test"].astype(np.float32), a["y_test"].astype(np.int64), 10)


# ----------------------------------------------------------------------------- digits
def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits, a seeded split, standardised per feature (train statistics)."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as _load

    d = _load()
    x, y = np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    xtr, xte = _standardise(x[tr], x[te])
    return Dataset("digits", xtr, y[tr], xte, y[te], 10)


# ----------------------------------------------------------------------------- cifar10
class _RestrictedUnpickler(pickle.Unpickler):
    """Constructs only builtin containers/scalars and numpy arrays; anything else is refused."""

    _ALLOWED = {
        ("builtins", n)
        for n in ("list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float", "bool", "complex")
    } | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 file missing: {path} (expected the python-pickle batches "
                                f"{', '.join(CIFAR_FILES)})")
    try:
        with open(path, "rb") as fh:
            d = _RestrictedUnpickler(fh, encoding="bytes").load()
        if not isinstance(d, dict):
            raise ValueError("not a dict")
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        data = np.asarray(d["data"])
        labels = np.asarray(d["labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
            raise ValueError(f"data of shape {data.shape} with {labels.shape[0]} labels, expected (n, 3072)")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError("labels outside 0..9")
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"corrupt CIFAR-10 file {path}: {type(exc).__name__}: {exc}") from None
    return data.astype(np.float32), labels


def load_cifar10(data_dir: str | os.PathLike, max_train: int | None = None) -> Dataset:
    """CIFAR-10 from ``data_dir`` holding the python-pickle batches, standardised per feature.

    ``max_train`` keeps only the first ``max_train`` training images (None: all 50000).
    """
    if data_dir is None:
        raise ValueError("cifar10 needs data_dir: a directory holding data_batch_1..5 and test_batch")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"CIFAR-10 directory not found: {data_dir}")
    parts = [_read_cifar_batch(os.path.join(data_dir, f)) for f in CIFAR_FILES]
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    if max_train is not None:
        xtr, ytr = xtr[: int(max_train)], ytr[: int(max_train)]
    xte, yte = parts[5]
    xtr, xte = _standardise(xtr, xte)
    return Dataset("cifar10", xtr, ytr, xte, yte, 10)


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None, size: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load a dataset by name (one of :data:`DATASETS`).

    ``size``: total examples for mnist1d (default 10000), training examples kept for cifar10
    (default all); ignored for digits. ``seed``: the data seed (generation / split), separate
    from the run seed.
    """
    if name == "mnist1d":
        return load_mnist1d(10000 if size is None else int(size), seed)
    if name == "digits":
        return load_digits(seed=seed)
    if name == "cifar10":
        return load_cifar10(data_dir, max_train=size)
    raise ValueError(f"data must be one of {', '.join(DATASETS)}, got {name!r}")
