"""Data loaders of the training experiments: seeded cached mnist1d, digits, CIFAR-10 format."""

import os
import pickle

import numpy as np
import pytest

pytest.importorskip("mnist1d")
from isometry.experiments import data as D  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("ISOMETRY_CACHE", str(d))
    return d


def test_mnist1d_seeded_and_cached(cache, monkeypatch):
    state = np.random.get_state()[1].copy()
    a = D.load_mnist1d(num_samples=100, seed=3)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched
    assert a.x_train.shape == (80, 40) and a.x_test.shape == (20, 40)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert set(np.unique(np.concatenate([a.y_train, a.y_test]))) <= set(range(10))
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("mnist1d-") and files[0].endswith(".npz")

    import mnist1d.data

    def boom(*_a, **_k):
        raise AssertionError("regenerated instead of using the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    b = D.load_mnist1d(num_samples=100, seed=3)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    monkeypatch.undo()
    monkeypatch.setenv("ISOMETRY_CACHE", str(cache))
    c = D.load_mnist1d(num_samples=100, seed=4, cache=False)
    assert not np.array_equal(a.x_train, c.x_train)
    assert len(os.listdir(cache)) == 1  # cache=False writes nothing


def test_mnist1d_corrupt_cache_regenerates(cache):
    a = D.load_mnist1d(num_samples=50, seed=1)
    (f,) = os.listdir(cache)
    (cache / f).write_bytes(b"not a zip file")
    b = D.load_mnist1d(num_samples=50, seed=1)
    assert np.array_equal(a.x_train, b.x_train)
    with pytest.raises(ValueError, match="num_samples"):
        D.load_mnist1d(num_samples=3)


def test_digits_split_and_standardised():
    d = D.load_digits(seed=0)
    assert d.x_train.shape[1] == 64 and len(d.y_train) + len(d.y_test) == 1797
    assert abs(len(d.y_test) - 0.2 * 1797) < 1
    m, s = d.x_train.mean(0), d.x_train.std(0)
    assert np.allclose(m, 0, atol=1e-5)
    assert np.allclose(s[s > 0.5], 1, atol=1e-4)
    assert np.array_equal(d.x_test, D.load_digits(seed=0).x_test)
    assert not np.array_equal(d.y_test, D.load_digits(seed=1).y_test)
    with pytest.raises(ValueError, match="test_fraction"):
        D.load_digits(test_fraction=1.5)


def _write_cifar(d, n=6, seed=0, protocol=2):
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    for name in D.CIFAR_FILES:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        with open(os.path.join(d, name), "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_format(tmp_path, protocol):
    _write_cifar(tmp_path, n=6, protocol=protocol)
    ds = D.load_cifar10(tmp_path)
    assert ds.x_train.shape == (30, 3072) and ds.x_test.shape == (6, 3072) and ds.n_classes == 10
    assert np.allclose(ds.x_train.mean(0), 0, atol=1e-4) and np.allclose(ds.x_train.std(0), 1, atol=1e-3)
    with open(tmp_path / "data_batch_2", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert np.array_equal(ds.y_train[6:12], raw[b"labels"])
    assert D.load_dataset("cifar10", data_dir=str(tmp_path), size=10).x_train.shape == (10, 3072)


def test_cifar10_errors_name_the_file(tmp_path):
    _write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        D.load_cifar10(tmp_path)
    _write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="corrupt CIFAR-10 file .*test_batch"):
        D.load_cifar10(tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match="test_batch.*3072"):
        D.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="directory"):
        D.load_cifar10(tmp_path / "nope")
    with pytest.raises(ValueError, match="data_dir"):
        D.load_dataset("cifar10")
    with pytest.raises(ValueError, match="data must be one of"):
        D.load_dataset("imagenet")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_restricted_unpickler_refuses_code(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh)
    with pytest.raises(ValueError, match="data_batch_1.*refusing to load"):
        D.load_cifar10(tmp_path)
