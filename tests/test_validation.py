import math
import re

import pytest

from cnnzoo import _validation as v


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, math.nan, True, "0.5", None, [0.1]])
def test_check_rate_rejects(value):
    with pytest.raises(ValueError, match=r"Received: rate="):
        v.check_rate("rate", value)


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999])
def test_check_rate_accepts(value):
    assert v.check_rate("rate", value) == float(value)


def test_check_int():
    assert v.check_int("n", 3, low=1) == 3
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ValueError, match=r"Received: n="):
            v.check_int("n", bad, low=1)


def test_check_choice_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Did you mean 'spatial'\?.*Received: kind='spatail'"):
        v.check_choice("kind", "spatail", ["standard", "spatial"])


def test_check_input_shape_names_minimum():
    assert v.check_input_shape("input_shape", [32, 32, 3], min_size=32) == (32, 32, 3)
    with pytest.raises(ValueError, match=r"at least 32x32 for `vgg16`.*Received: input_shape"):
        v.check_input_shape("input_shape", (31, 32, 3), min_size=32, model="vgg16")
    for bad in ((32, 32), "32,32,3", (32, 32, 0), (32.0, 32, 3), (True, 32, 3)):
        with pytest.raises(ValueError, match="Received: input_shape="):
            v.check_input_shape("input_shape", bad)


def test_check_per_stage():
    assert v.check_per_stage("r", 0.1, 3) == [0.1, 0.1, 0.1]
    assert v.check_per_stage("r", (0.1, 0.2), 2) == [0.1, 0.2]
    with pytest.raises(ValueError, match=r"list of 3 values.*Received: r=\[0.1, 0.2\]"):
        v.check_per_stage("r", [0.1, 0.2], 3)
    with pytest.raises(ValueError, match=r"Received: r\[1\]=2.0"):
        v.check_per_stage("r", [0.1, 2.0], 2)


def test_check_list_from_string_or_sequence():
    assert v.check_list("rates", "0, 0.25,0.5", v.check_rate) == [0.0, 0.25, 0.5]
    assert v.check_list("rates", (0.1,), v.check_rate) == [0.1]
    with pytest.raises(ValueError, match=r"comma-separated values.*Received: rates='0,x'"):
        v.check_list("rates", "0,x", v.check_rate)
    with pytest.raises(ValueError, match=r"a list of values.*Received: rates=\[\]"):
        v.check_list("rates", [], v.check_rate)
    with pytest.raises(ValueError, match=r"Received: rates=1.5"):
        v.check_list("rates", [0.1, 1.5], v.check_rate)


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_check_number_refuses_infinity_unless_allowed(value):
    with pytest.raises(ValueError, match="finite number. Received: x="):
        v.check_number("x", value)
    assert v.check_number("x", value, allow_inf=True) == value


def test_check_output_folder(tmp_path):
    assert v.check_output_folder("out", tmp_path / "new" / "deeper") == str(
        tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # nothing is created
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="a folder, not a file"):
        v.check_output_folder("out", tmp_path / "file")
    with pytest.raises(ValueError, match="is a file. Received: out="):
        v.check_output_folder("out", tmp_path / "file" / "sub")
    with pytest.raises(ValueError, match="Received: out=''"):
        v.check_output_folder("out", "")


def test_module_installed_counts_a_refusing_import_hook_as_missing(monkeypatch):
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "json":
                raise ModuleNotFoundError("blocked", name=name)

    assert v.module_installed("json")
    monkeypatch.setattr(sys, "meta_path", [Refuse(), *sys.meta_path])
    monkeypatch.delitem(sys.modules, "json", raising=False)
    assert not v.module_installed("json")
    assert v.module_installed("math") and not v.module_installed("no_such_module_here")


def test_messages_name_arrays_never_print_them():
    np = pytest.importorskip("numpy")
    x = np.zeros((1797, 8, 8), dtype="float32")
    with pytest.raises(ValueError) as info:
        v.fail("Expected data.", "data", (x, np.arange(1797)))
    message = str(info.value)
    assert message.endswith("Received: data=(ndarray(shape=(1797, 8, 8), dtype=float32), "
                            f"ndarray(shape=(1797,), dtype={np.arange(1).dtype.name}))")
    big = np.zeros((100, 8, 8, 1), "uint8")
    for value, shown in (
            (big, "ndarray(shape=(100, 8, 8, 1), dtype=uint8)"),
            ({"x": big, "y": [1, 2]}, "{'x': ndarray(shape=(100, 8, 8, 1), dtype=uint8), "
                                      "'y': [1, 2]}"),
            ([big] * 6, "[" + "ndarray(shape=(100, 8, 8, 1), dtype=uint8), " * 4
             + "... (6 items)]"),
            ((1, [big]), "(1, [ndarray(shape=(100, 8, 8, 1), dtype=uint8)])")):
        with pytest.raises(ValueError) as info:
            v.fail("Expected data.", "data", value)
        assert str(info.value) == f"Expected data. Received: data={shown}"
    with pytest.raises(ValueError, match=r"Received: rate=1.5$"):
        v.check_rate("rate", np.float64(1.5))  # a NumPy scalar is a number: its value shown
    with pytest.raises(ValueError) as info:
        v.fail("Expected a few numbers.", "values", list(range(5000)))
    assert len(str(info.value)) < 200 and str(info.value).endswith(f"({len(repr(list(range(5000)))):,} characters)")
    path = "/tmp/" + "d" * 300
    with pytest.raises(ValueError, match=re.escape(f"Received: path={path!r}")):
        v.fail("Expected a folder.", "path", path)  # paths are quoted whole
