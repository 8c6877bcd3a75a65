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
import logging
import math
import os
import pickle
import pickletools
import random
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from .._checks import check_fits, check_int, check_probability, format_bytes
from .._io import atomic_write_bytes
from .config import DATASETS

_log = logging.getLogger("isometry")

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
    num_samples = check_int("num_samples", num_samples, 10)  # one per class at least
    seed = check_int("seed", seed, 0)
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args["num_samples"] = num_samples
    args["seed"] = seed
    return args


_MNIST1D_BYTES_PER_SAMPLE = 4096  # make_dataset's templates, transforms and float64 copies, with margin


def _read_mnist1d_cache(path: str, num_samples: int) -> dict | None:
    """The cached arrays, or None (with a warning saying why) when the file cannot be used."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # the file is closed on any error
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
        n_train, n_test = len(arrays["y"]), len(arrays["y_test"])
        ok = (n_train + n_test == num_samples and arrays["x"].shape == (n_train, 40)
              and arrays["x_test"].shape == (n_test, 40) and arrays["y"].ndim == arrays["y_test"].ndim == 1
              and all(arrays[k].dtype.kind in "iu" and (arrays[k].size == 0 or 0 <= arrays[k].min() <= arrays[k].max() <= 9)
                      for k in ("y", "y_test"))
              and all(np.isfinite(arrays[k]).all() for k in ("x", "x_test")))
        if not ok:
            raise ValueError("arrays of the wrong shape or type")
        return arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, struct.error) as exc:
        _log.warning("isometry: the cached mnist1d data %s is unreadable (%s: %s); generating it again",
                     path, type(exc).__name__, exc)
        return None


def load_mnist1d(num_samples: int = 10000, seed: int = 0, *, cache: bool = True) -> Dataset:
    """MNIST-1D (40 features, 10 classes), generated with ``mnist1d.data.make_dataset``.

    ``num_samples`` examples in total, 80% for training; ``seed`` seeds the generator. The
    global ``random``/``numpy.random`` state that ``make_dataset`` reseeds is restored afterwards.
    The result is cached in :func:`cache_dir` (written atomically). A cache file that cannot be read
    back completely is generated again, and a cache that cannot be written (a full disk) only costs
    the next run the generation; both are logged as warnings (logger ``"isometry"``).
    """
    try:
        from mnist1d.data import ObjectView, make_dataset
    except ImportError as exc:  # pragma: no cover
        raise ImportError('the mnist1d dataset needs the mnist1d package: pip install "isometry[data]"') from exc
    args = mnist1d_args(num_samples, seed)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"mnist1d-{key}.npz")
    if cache and os.path.exists(path):
        arrays = _read_mnist1d_cache(path, args["num_samples"])
        if arrays is not None:
            return _mnist1d_dataset(arrays)
    check_fits(args["num_samples"] * _MNIST1D_BYTES_PER_SAMPLE, f"load_mnist1d(num_samples={args['num_samples']})",
               "use fewer samples")
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
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            _log.warning("isometry: could not cache the mnist1d data (%s); it will be generated again next time", exc)
    return _mnist1d_dataset(arrays)


def _mnist1d_dataset(a: dict) -> Dataset:
    return Dataset("mnist1d", a["x"].astype(np.float32), a["y"].astype(np.int64),
                   a["x_test"].astype(np.float32), a["y_test"].astype(np.int64), 10)


# ----------------------------------------------------------------------------- digits
def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits, a seeded split, standardised per feature (train statistics)."""
    test_fraction = check_probability("test_fraction", test_fraction, open=True)
    seed = check_int("seed", seed, 0)
    from sklearn.datasets import load_digits as _load

    d = _load()
    x, y = np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    xtr, xte = _standardise(x[tr], x[te])
    return Dataset("digits", xtr, y[tr], xte, y[te], 10)


# ----------------------------------------------------------------------------- cifar10
MAX_CIFAR_FILE_BYTES = 128 * 2**20
"""The largest CIFAR-10 batch file read. A standard batch holds 10000 images: about 30 MiB as
distributed (Python 2 byte strings), at most about 60 MiB re-pickled by Python 3 at protocol 2
(the image bytes become latin-1 text, up to two UTF-8 bytes each)."""
_MAX_PICKLE_OPCODES = 10**6  # a standard batch has about 25000
_MAX_RECONSTRUCT_ITEMS = 2**20  # numpy pickles reconstruct an empty array, then fill it from its bytes


class _RefusedPickle(pickle.UnpicklingError):
    """A pickle asking for something the CIFAR-10 reader does not construct."""


def _guard_bytes(cls):
    """``bytes``/``bytearray`` that refuse an integer argument (``bytearray(10**12)`` allocates 10^12 zeros)."""

    def make(*args):
        if args and isinstance(args[0], int):
            raise _RefusedPickle(f"refusing to allocate {cls.__name__}({args[0]}) from a pickle")
        return cls(*args)

    return make


def _guard_reconstruct(fn):
    """numpy's ``_reconstruct(subtype, shape, dtype)``, for the small shapes numpy itself pickles."""

    def make(subtype, shape, dtype):
        n = math.prod(shape) if isinstance(shape, tuple) and all(isinstance(k, int) for k in shape) else None
        if subtype is not np.ndarray or n is None or n > _MAX_RECONSTRUCT_ITEMS:
            raise _RefusedPickle(f"refusing to reconstruct an array of shape {shape!r}")
        return fn(subtype, shape, dtype)

    return make


class _RestrictedUnpickler(pickle._Unpickler):
    """Constructs only builtin containers/scalars and numeric NumPy arrays; anything else is refused.

    The pure-Python unpickler is used, reading from memory: a length field larger than the file
    cannot make it allocate more than the file holds. Calls that would allocate from a small number
    (``bytearray(10**12)``, an array reconstructed with a huge shape) and arrays whose state does not
    match their bytes, or holds Python objects (``ndarray.__setstate__`` with an object dtype and a
    short list crashes the interpreter), are refused.
    """

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

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise _RefusedPickle(f"refusing to load {module}.{name}")
        obj = super().find_class(module, name)
        if name in ("bytes", "bytearray"):
            return _guard_bytes(obj)
        if name == "_reconstruct":
            return _guard_reconstruct(obj)
        return obj

    def _load_newobj(self):
        self.stack.pop()  # the arguments: never used, the class is refused
        cls = self.stack[-1]
        raise _RefusedPickle(f"refusing to construct {getattr(cls, '__name__', cls)!r} from a pickle")

    def _load_build(self):
        state = self.stack[-1]
        inst = self.stack[-2]
        if isinstance(inst, np.ndarray):
            ok = isinstance(state, tuple) and len(state) == 5
            if ok:
                _, shape, dtype, _, raw = state
                ok = (isinstance(dtype, np.dtype) and dtype.kind in "biuf" and isinstance(raw, (bytes, bytearray))
                      and isinstance(shape, tuple) and all(isinstance(k, int) and k >= 0 for k in shape)
                      and math.prod(shape) * dtype.itemsize == len(raw))
            if not ok:
                raise _RefusedPickle("refusing an array whose state is not numeric data matching its shape")
        elif isinstance(inst, np.dtype):  # (version, byte order, subarray, fields, names, sizes, flags): plain types only
            if not (isinstance(state, tuple) and len(state) >= 5 and state[2] is None and state[3] is None
                    and state[4] is None and inst.kind in "biuf"):
                raise _RefusedPickle(f"refusing a structured or non-numeric dtype {inst!r}")
        elif not isinstance(inst, (dict, list, set)):
            raise _RefusedPickle(f"refusing to set the state of a {type(inst).__name__}")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj
    dispatch[pickle.BUILD[0]] = _load_build


def _check_opcodes(raw: bytes) -> None:
    """Walk the pickle's opcodes (pure Python, from memory): every counted argument must be present
    in the file, and a standard batch has few opcodes (each can create an object)."""
    for n, _ in enumerate(pickletools.genops(io.BytesIO(raw))):
        if n > _MAX_PICKLE_OPCODES:
            raise _RefusedPickle(f"more than {_MAX_PICKLE_OPCODES} pickle opcodes")


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 file missing: {path} (expected the python-pickle batches "
                                f"{', '.join(CIFAR_FILES)})")
    size = os.path.getsize(path)
    if size > MAX_CIFAR_FILE_BYTES:
        raise ValueError(f"CIFAR-10 file {path} holds {format_bytes(size)}, more than a batch can "
                         f"({format_bytes(MAX_CIFAR_FILE_BYTES)}): not a CIFAR-10 python batch")
    with open(path, "rb") as fh:
        raw = fh.read()  # at most MAX_CIFAR_FILE_BYTES (read(n) would reserve n bytes up front)
    if len(raw) > MAX_CIFAR_FILE_BYTES:  # pragma: no cover  (grew since it was measured)
        raise ValueError(f"CIFAR-10 file {path} grew while it was read")
    try:
        _check_opcodes(raw)
        d = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
        if not isinstance(d, dict):
            raise ValueError("not a dict")
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        data = d["data"]
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "iuf":
            raise ValueError(f"data must be a numeric array, got {type(data).__name__}")
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"data of shape {data.shape}, expected (n, 3072)")
        labels = d["labels"]
        if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) != data.shape[0]:
            raise ValueError(f"labels must be a list with one label for each of the {data.shape[0]} images")
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(f"labels must be integers, got an array of {labels.dtype} and shape {labels.shape}")
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError("labels outside 0..9")
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError,
            OverflowError, RecursionError, UnicodeDecodeError, struct.error) as exc:
        raise ValueError(f"corrupt CIFAR-10 file {path}: {type(exc).__name__}: {exc}") from None
    return data.astype(np.float32), labels


def load_cifar10(data_dir: str | os.PathLike, max_train: int | None = None) -> Dataset:
    """CIFAR-10 from ``data_dir`` holding the python-pickle batches, standardised per feature.

    ``max_train`` keeps only the first ``max_train`` training images (None: all 50000). Each batch
    is read with a restricted unpickler (numeric arrays and builtin containers only, files of at
    most :data:`MAX_CIFAR_FILE_BYTES`); the memory of the whole load is estimated from the file
    sizes first and a load that cannot fit is refused.
    """
    if data_dir is None:
        raise ValueError("cifar10 needs data_dir: a directory holding data_batch_1..5 and test_batch")
    max_train = check_int("max_train", max_train, 1, none=True)
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"CIFAR-10 directory not found: {data_dir}")
    paths = [os.path.join(data_dir, f) for f in CIFAR_FILES]
    sizes = [os.path.getsize(p) for p in paths if os.path.isfile(p)]
    # uint8 bytes -> the parsed batch, float32 (4x), the concatenation and the standardised copy (4x each)
    check_fits(16 * sum(sizes), f"load_cifar10({data_dir!r})", "free memory or use a smaller max_train")
    parts = [_read_cifar_batch(p) for p in paths]
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    if max_train is not None:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
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
    size = check_int("size", size, 1, none=True)
    if name == "mnist1d":
        return load_mnist1d(10000 if size is None else size, seed)
    if name == "digits":
        return load_digits(seed=seed)
    if name == "cifar10":
        return load_cifar10(data_dir, max_train=size)
    raise ValueError(f"data must be one of {', '.join(DATASETS)}, got {name!r}")
