"""cnnzoo.verify: passes on cnnzoo's layers, and catches wrong ones."""

import json
import re

import keras
import pytest
from keras import ops

from cnnzoo import cli, verify
from cnnzoo.layers import Dropout, ReLU
from cnnzoo.layers import dropout as dropout_module


class ReLUGradOneAtZero(ReLU):
    """Gradient 1 at x = 0: the x branch is taken there.

    The default configuration's values stay right (x is 0 there); the
    gradient is what must be caught.
    """

    def call(self, inputs):
        return ops.where(ops.equal(inputs, 0), inputs, super().call(inputs))


class DropoutWithoutScaling(Dropout):
    """Drops, but forgets to divide the kept units by 1 - rate."""

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            keep = dropout_module.keep_mask(ops.shape(inputs), self.rate, inputs.dtype,
                                            self.seed_generator)
            return ops.where(keep, inputs, ops.zeros_like(inputs))
        return inputs


class DropoutAtInference(Dropout):
    """Drops whatever `training` says."""

    def call(self, inputs, training=False):
        return super().call(inputs, training=True)


class ReLUAsOldKeras(ReLU):
    """Keras before 3.15: a threshold as `x * cast(x > threshold)`, NaN at -inf and NaN."""

    def call(self, inputs):
        if self.threshold and not self.negative_slope and self.max_value is None:
            return inputs * ops.cast(ops.greater(inputs, self.threshold), inputs.dtype)
        return super().call(inputs)


def _failed(checks):
    return {c.name for c in checks if not c.passed}


@pytest.mark.multibackend
def test_relu_checks_pass_and_catch_gradient_one_at_zero():
    good = verify.check_relu(quick=True, dtypes=("float32",))
    assert not _failed(good), [c for c in good if not c.passed]
    bad = verify.check_relu(ReLUGradOneAtZero, quick=True, dtypes=("float32",))
    failed = _failed(bad)
    assert "relu/gradient-at-kinks/float32" in failed
    assert "relu/gradient/float32" in failed
    kink = next(c for c in bad if c.name == "relu/gradient-at-kinks/float32")
    assert kink.statistic > kink.tolerance


@pytest.mark.multibackend
def test_relu_special_values_follow_the_definition_not_a_wrong_reference():
    # Against a reference as wrong as Keras before 3.15, cnnzoo's ReLU still
    # passes (the definition decides at +-inf, +-0 and NaN), and the report names
    # the reference's disagreement; a ReLU with that flaw fails.
    checks = verify.check_relu(reference_class=ReLUAsOldKeras, quick=True, dtypes=("float32",))
    assert not _failed(checks), [c for c in checks if not c.passed]
    definition = next(c for c in checks if c.name == "relu/definition/float32")
    # (NumPy 2 writes np.float32(-inf), NumPy 1 -inf.)
    assert "ReLUAsOldKeras" in definition.detail
    assert re.search(r"thr=0\.5 at x=(np\.float32\()?-inf\)?: (np\.float32\()?nan\)? "
                     r"\(definition (np\.float32\()?0\.0\)?\)", definition.detail)
    bad = verify.check_relu(ReLUAsOldKeras, quick=True, dtypes=("float32",))
    assert {"relu/definition/float32", "relu/forward/float32"} <= _failed(bad)
    # thr=0.5 at -inf and at NaN: the two points where Keras before 3.15 was wrong.
    definition = next(c for c in bad if c.name == "relu/definition/float32")
    assert definition.statistic == 2
    assert re.search(r"thr=0\.5 at x=(np\.float32\()?nan", definition.detail)


@pytest.mark.multibackend
def test_dropout_checks_pass_and_catch_wrong_dropouts():
    good = verify.check_dropout(quick=True, dtypes=("float32",))
    assert not _failed(good), [c for c in good if not c.passed]

    unscaled = _failed(verify.check_dropout(DropoutWithoutScaling, quick=True,
                                            dtypes=("float32",)))
    assert "dropout/kept-values-scaled" in unscaled
    assert "dropout/gradient" in unscaled
    assert "dropout/mean-preserved/rate=0.5" in unscaled
    assert "dropout/dropped-fraction/rate=0.5" not in unscaled

    at_inference = _failed(verify.check_dropout(DropoutAtInference, quick=True,
                                                dtypes=("float32",)))
    assert "dropout/inference-identity" in at_inference


def test_model_check_catches_dropout_at_inference():
    good = verify.check_model("simple_cnn")
    assert not _failed(good), good
    bad = verify.check_model("simple_cnn", dropout_class=DropoutAtInference)
    assert "model/simple_cnn/inference" in _failed(bad)
    assert "model/simple_cnn/layers-swapped" not in _failed(bad)


def test_report_table_json_and_failure(tmp_path):
    checks = verify.check_relu(ReLUGradOneAtZero, quick=True, dtypes=("float32",))
    report = verify.Report(checks, backend=keras.backend.backend(),
                           keras_version=keras.__version__)
    assert not report.passed
    table = report.format_table()
    assert "FAIL" in table and "relu/gradient-at-kinks/float32" in table
    path = tmp_path / "report.json"
    data = json.loads(report.to_json(path))
    assert data == json.loads(path.read_text())
    assert data["passed"] is False and data["num_failed"] == len(report.failures())
    assert {"name", "statistic", "tolerance", "passed", "detail"} <= set(data["checks"][0])


def test_verify_command_quick_passes(tmp_path, capsys):
    path = tmp_path / "verify.json"
    code = cli.main(["verify", "--quick", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out and "model/simple_cnn/inference" in out
    data = json.loads(path.read_text())
    assert data["passed"] and data["num_checks"] == len(data["checks"]) > 30
    assert any(c["name"] == "dropout/mask-equals-keras" for c in data["checks"])


def test_verify_rejects_unknown_models():
    with pytest.raises(ValueError, match="Received: models="):
        verify.verify(models="no_such_model*", layers=False)
    with pytest.raises(ValueError, match="Received: name="):
        verify.verify(models=["no_such_model"], layers=False)


def test_verify_keeps_the_callers_dtype_policy():
    # Keras's clear_session after each model reset it to float32, for the
    # caller and for every model after the first.
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        report = verify.verify(models=["simple_cnn", "lenet5"], layers=False)
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert report.passed
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("call, name", [
    (lambda: verify.verify(models=["simple_cnn", 3], layers=False), "models"),
    (lambda: verify.check_relu(dtypes=["float17"]), "dtypes"),
    (lambda: verify.check_relu(dtypes="float32"), "dtypes"),
    (lambda: verify.check_relu(relu_class=5), "relu_class"),
    (lambda: verify.check_dropout(dtypes=["int32"]), "dtypes"),
    (lambda: verify.check_model("simple_cnn", batch_size=0), "batch_size"),
])
def test_bad_arguments_are_value_errors(call, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        call()


def test_report_json_to_a_folder_is_refused(tmp_path):
    report = verify.Report([], backend=keras.backend.backend(), keras_version=keras.__version__)
    with pytest.raises(ValueError, match="not a folder. Received: path="):
        report.to_json(tmp_path)
    assert list(tmp_path.iterdir()) == []
