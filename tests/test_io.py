"""The one file writer: strict JSON, NumPy values, the umask, and failures that leave nothing behind."""

import json
import math
import os
import stat

import numpy as np
import pytest

from isometry._io import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, to_jsonable


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def test_json_numpy_values_and_non_finite_numbers(tmp_path):
    obj = {"a": np.array([1.0, np.nan, np.inf, -np.inf]), "f32": np.float32(0.5), "i64": np.int64(7),
           "b": np.bool_(True), "nested": [(np.float64("nan"), 2)], 3: "int key", "m": np.arange(4).reshape(2, 2)}
    p = atomic_write_json(tmp_path / "x.json", obj)
    with open(p, encoding="utf-8") as fh:
        text = fh.read()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back == {"a": [1.0, None, None, None], "f32": 0.5, "i64": 7, "b": True, "nested": [[None, 2]],
                    "3": "int key", "m": [[0, 1], [2, 3]]}
    assert type(back["i64"]) is int
    assert to_jsonable(float("inf")) is None and to_jsonable(np.float32("nan")) is None
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        to_jsonable(object())


def test_files_follow_the_umask(tmp_path, umask):
    umask(0o022)
    p = atomic_write_text(tmp_path / "a.txt", "x")
    assert _mode(p) == 0o644
    umask(0o077)
    assert _mode(atomic_write_bytes(tmp_path / "b.bin", b"x")) == 0o600
    umask(0o022)
    plain = tmp_path / "plain.txt"
    plain.write_text("old")  # as open(path, "w") makes it
    os.chmod(plain, 0o644)
    atomic_write_text(plain, "new")
    assert _mode(plain) == 0o644 and plain.read_text() == "new"  # overwriting keeps 0644


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"v": 1})

    def half(fh):
        fh.write(b'{"v": 2')
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, half)
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["out.json"]

    def to_path(path):
        with open(path, "w") as fh:
            fh.write("partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=f"could not write {target}: No space left on device"):
        atomic_write(target, to_path, to_path=True)
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["out.json"]
    with pytest.raises(ValueError):  # strict JSON: nothing is written
        atomic_write_text(tmp_path / "y.json", json.dumps(math.nan, allow_nan=False))
    assert os.listdir(tmp_path) == ["out.json"]


def test_writer_receiving_a_path_keeps_the_suffix(tmp_path):
    seen = []

    def write(path):
        seen.append(os.path.splitext(path)[1])
        np.save(path, np.arange(3))

    atomic_write(tmp_path / "a.npy", write, to_path=True)
    assert seen == [".npy"] and np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
