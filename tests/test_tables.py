"""holoprot.io.tables' Arrow builders: the same arrays as ``pa.array``, without importing pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from holoprot.io.tables import numeric_array, repeated_string, string_array, vector_array


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int32, np.int64, np.uint16, np.float16, np.float32, np.float64]
)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 1001])
def test_numeric_array_equals_pa_array(dtype, n):
    values = (np.random.default_rng(n).normal(size=n) * 100).astype(dtype)
    got = numeric_array(values)
    assert got.equals(pa.array(values)) and got.null_count == 0
    strided = numeric_array(values[::2])  # a non-contiguous view is copied, not misread
    assert strided.equals(pa.array(values[::2]))


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_bool_array_is_bit_packed_correctly(n):
    values = np.random.default_rng(n).random(n) < 0.5
    got = numeric_array(values)
    assert got.type == pa.bool_() and got.to_pylist() == values.tolist()


def test_numeric_array_rejects_matrices():
    with pytest.raises(ValueError, match="1-d"):
        numeric_array(np.zeros((2, 2)))


def test_string_builders_equal_pa_array():
    values = ["A", "", "Ä1", "长链", "ZZZZ", " "]
    assert string_array(values).equals(pa.array(values, pa.string()))
    assert string_array(np.array(values)).equals(pa.array(values, pa.string()))
    assert string_array([]).equals(pa.array([], pa.string()))
    assert repeated_string("1abc", 5).equals(pa.array(["1abc"] * 5, pa.string()))
    assert repeated_string("é", 0).equals(pa.array([], pa.string()))


def test_vector_array_rows():
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    got = vector_array(values)
    assert got.type == pa.list_(pa.float32(), 3)
    assert np.array_equal(np.stack(got.to_numpy(zero_copy_only=False)), values)


def test_builders_do_not_import_pandas():
    code = (
        "import sys, numpy as np\n"
        "from holoprot.io.tables import numeric_array, string_array, vector_array\n"
        "numeric_array(np.arange(3)); numeric_array(np.ones(3, bool)); string_array(['a'])\n"
        "vector_array(np.ones((2, 2)))\n"
        "assert 'pandas' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
