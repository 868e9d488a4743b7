"""ZooHyperModel: the locked search space, its arguments, and every Keras Tuner tuner."""

import keras
import keras_tuner as kt
import pytest

from tuning.hypermodel import NonFiniteLossGuard, ZooHyperModel

DIGITS = dict(input_shape=(8, 8, 1), num_classes=10)


def _digits(n=120):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x[:n] * 16.0).reshape(-1, 8, 8, 1).astype("float32")
    return x, y[:n].astype("int32")


def test_default_search_space_is_locked():
    hp = kt.HyperParameters()
    model = ZooHyperModel("simple_cnn", **DIGITS).build(hp)
    assert hp.values == {
        "dropout_rate": 0.5,  # the paper's head rate
        "block_dropout_rate": 0.0,
        "dropout_type": "standard",
    }
    assert model.output_shape == (None, 10)
    assert model.layers[-1].name == "probabilities"
    configs = {p.name: p.get_config() for p in hp.space}
    assert (configs["dropout_rate"]["min_value"], configs["dropout_rate"]["step"]) == (0.0, 0.1)
    assert round(configs["dropout_rate"]["max_value"], 6) == 0.7
    assert round(configs["block_dropout_rate"]["max_value"], 6) == 0.5
    assert configs["dropout_type"]["values"] == ["standard", "spatial"]


def test_trained_tunable_model_exports_with_plain_dropout_and_the_same_predictions():
    import numpy as np

    from cnnzoo.layers import VariableDropout

    hm = ZooHyperModel("simple_cnn", **DIGITS)
    hp = kt.HyperParameters()
    hm.declare(hp)
    hp.values.update(dropout_rate=0.3, block_dropout_rate=0.0, dropout_type="spatial")
    x, y = _digits(64)
    model = hm.build(hp)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert model.get_layer("simple_cnn").get_layer("fc1_drop").rate == 0.3
    plain = hm.exportable(model, hp)
    body = plain.get_layer("simple_cnn")
    assert not any(isinstance(layer, VariableDropout) for layer in body.layers)
    # The implementation's own dropout where the rate is not 0, none where it is.
    assert type(body.get_layer("fc1_drop")) is keras.layers.Dropout
    assert body.get_layer("fc1_drop").rate == 0.3
    assert not any(layer.name.startswith("block") and "drop" in layer.name
                   for layer in body.layers)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(plain(x)),
                                  keras.ops.convert_to_numpy(model(x)))
    # A model of another configuration is refused, not half copied.
    other = ZooHyperModel("lenet5", **DIGITS)
    with pytest.raises(ValueError, match="configuration.*Received: model='simple_cnn_classifier'"):
        other.exportable(model, hp)


def test_defaults_follow_the_family():
    hm = ZooHyperModel("vgg11", input_shape=(32, 32, 3), num_classes=10)
    assert hm.defaults() == {"dropout_rate": 0.5, "block_dropout_rate": 0.0,
                             "dropout_type": "standard"}
    assert hm.fixed_values() == {"learning_rate": 1e-3, "weight_decay": 0.0,
                                 "label_smoothing": 0.0, "activation": "relu"}


def test_per_stage_learning_rate_and_activation_names():
    hm = ZooHyperModel("simple_cnn", per_stage=True, learning_rate=True, activation=True,
                       weight_decay=True, label_smoothing=True, **DIGITS)
    hp = kt.HyperParameters()
    hm.build(hp)
    assert hp.values == {
        "dropout_rate": 0.5,
        "block_dropout_rate_1": 0.0,
        "block_dropout_rate_2": 0.0,
        "dropout_type": "standard",
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "activation": "relu",
    }
    assert hm.fixed_values() == {}


def test_fixed_values_are_not_declared_and_reach_the_model():
    hm = ZooHyperModel("simple_cnn", dropout_rate=0.25, block_dropout_rate=(0.0, 0.2, 0.1),
                       dropout_type="spatial", **DIGITS)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert hp.values == {"block_dropout_rate": 0.0}
    assert model.get_layer("simple_cnn").get_layer("fc1_drop").rate == 0.25


def test_grid_reaches_the_top_of_the_range():
    # Keras Tuner counts grid points with floor division (0.5 // 0.1 == 4).
    hp = kt.HyperParameters()
    ZooHyperModel("simple_cnn", **DIGITS).declare(hp)
    block = next(p for p in hp.space if p.name == "block_dropout_rate")
    samples = {round(block.random_sample(seed), 6) for seed in range(200)}
    assert samples == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}


@pytest.mark.parametrize("kwargs, match", [
    (dict(dropout_rate=1.5), "dropout_rate=1.5"),
    (dict(dropout_rate=(0.5, 0.1)), "low < high"),
    (dict(dropout_type="gaussian"), "dropout_type='gaussian'"),
    (dict(learning_rate=-1.0), "learning_rate=-1.0"),
    (dict(activation="relux"), "Did you mean 'relu'"),
    (dict(num_classes=1), "num_classes=1"),
    # Checked when the hypermodel is made, not in every trial's build.
    ({"input_size": "8"}, "input_size='8'"),
    ({"input_size": (2, 2)}, r"at least 4x4 for `simple_cnn`.*input_size=\(2, 2\)"),
])
def test_bad_arguments_are_clear(kwargs, match):
    args = dict(DIGITS, **kwargs)
    with pytest.raises(ValueError, match=match) as info:
        ZooHyperModel("simple_cnn", **args)
    assert "Received:" in str(info.value)


def test_unknown_model_suggests_a_name():
    with pytest.raises(ValueError, match="simple_cnn"):
        ZooHyperModel("simple_cn", **DIGITS)


@pytest.mark.parametrize("tuner_class, kwargs", [
    (kt.RandomSearch, dict(max_trials=1)),
    (kt.BayesianOptimization, dict(max_trials=2, num_initial_points=1)),
    (kt.Hyperband, dict(max_epochs=2, factor=2)),
])
def test_plain_keras_tuner_tuners_accept_it(tmp_path, tuner_class, kwargs):
    x, y = _digits()
    tuner = tuner_class(ZooHyperModel("simple_cnn", **DIGITS), objective="val_accuracy",
                        directory=str(tmp_path), seed=1, **kwargs)
    tuner.search(x[:90], y[:90], validation_data=(x[90:], y[90:]), epochs=1, batch_size=30,
                 verbose=0)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.status == "COMPLETED"
    assert set(best.hyperparameters.values) >= {"dropout_rate", "block_dropout_rate"}


@pytest.mark.multibackend
def test_fit_fails_the_trial_on_a_nan_loss():
    x, y = _digits(40)
    hm = ZooHyperModel("simple_cnn", **DIGITS)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    # A learning rate this large overflows the weights: the loss turns NaN.
    model.compile(optimizer=keras.optimizers.Adam(1e38), loss="sparse_categorical_crossentropy")
    with pytest.raises(kt.errors.FailedTrialError, match="loss became nan at epoch 1"):
        hm.fit(hp, model, x, y, epochs=3, batch_size=20, verbose=0)


def test_guard_stays_quiet_on_finite_losses():
    guard = NonFiniteLossGuard()
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    guard.on_epoch_end(0, {"loss": 0.3, "val_loss": 0.4})
    assert guard.reason is None
    guard.on_epoch_end(1, {"loss": 0.3, "val_loss": float("inf")})
    assert guard.reason == "val_loss became inf at epoch 2"
    assert guard.model.stop_training


@pytest.mark.parametrize("name", __import__("cnnzoo").list_models())
def test_every_zoo_model_has_a_valid_default_space(name):
    import cnnzoo

    info = cnnzoo.model_info(name)
    hm = ZooHyperModel(name, input_shape=info["default_input_shape"], num_classes=10)
    hp = kt.HyperParameters()
    hm.declare(hp)
    assert list(hp.values) == ["dropout_rate", "block_dropout_rate", "dropout_type"]
    for p in hp.space:
        config = p.get_config()
        if "min_value" in config:  # the paper's rate, inside the family's range
            assert config["min_value"] <= hp.values[p.name] <= config["max_value"]
    assert hp.values["dropout_rate"] == pytest.approx(info["dropout"]["dropout_rate"], abs=0.05)
