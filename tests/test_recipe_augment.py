"""cnnzoo.recipe.augment: seeded policies, in training only, out of exports, on every backend."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from cnnzoo import cli, pipeline
from cnnzoo import train as T
from cnnzoo.recipe import Recipe, optim
from cnnzoo.recipe import augment as A
from tests.helpers import Cut, cut_after_first_epoch, train_in_fresh_process

KW = dict(data="digits", num_samples=200, batch_size=64, precision="float32", verbose=0)
# Raw pixels, as the classifier takes them (0-255).
IMAGES = np.random.default_rng(0).uniform(0, 255, size=(8, 12, 12, 3)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.multibackend
@pytest.mark.parametrize("policy", ["light", "default", "strong", "randaugment"])
def test_a_seeded_policy_is_reproducible_and_off_at_inference(policy):
    def augmented(seed):
        layer = A.augmentation(policy, input_shape=IMAGES.shape[1:], seed=seed)
        return layer, _np(layer(IMAGES, training=True))

    layer, first = augmented(1)
    assert layer.name == A.LAYER_NAME
    np.testing.assert_array_equal(augmented(1)[1], first)  # the same seed, the same batch
    assert not np.array_equal(augmented(2)[1], first)
    assert not np.allclose(first, IMAGES)
    # Each training call draws anew; inference leaves the images as they are.
    assert not np.array_equal(_np(layer(IMAGES, training=True)), first)
    np.testing.assert_array_equal(_np(layer(IMAGES, training=False)), IMAGES)
    np.testing.assert_array_equal(_np(layer(IMAGES)), IMAGES)


def test_the_flip_is_the_recipes_choice():
    def layers(flip):
        built = A.augmentation("default", input_shape=(8, 8, 1), seed=0, flip=flip)
        return {layer.name: layer.get_config() for layer in built.layers}

    assert "augment_flip" not in layers("none")  # digits, text
    assert layers("horizontal")["augment_flip"]["mode"] == "horizontal"  # the default
    assert layers("vertical")["augment_flip"]["mode"] == "vertical"
    # The other layers keep their seeds with or without the flip.
    assert {k: c["seed"] for k, c in layers("none").items()} == {
        k: c["seed"] for k, c in layers("horizontal").items() if k != "augment_flip"}
    assert A.augmentation("none", input_shape=(8, 8, 1)) is None
    with pytest.raises(ValueError, match=r"Received: flip='diagonal'$"):
        A.augmentation("light", input_shape=(8, 8, 1), flip="diagonal")


def test_the_classifier_augments_in_training_only():
    knobs = dict(dropout_rate=0.0, block_dropout_rate=0.0)  # no other randomness
    model = pipeline.build_classifier("simple_cnn", (12, 12, 3), 10, augment="default",
                                      augment_seed=0, **knobs)
    plain = pipeline.build_classifier("simple_cnn", (12, 12, 3), 10, **knobs)
    stripped = A.strip(model)
    assert A.LAYER_NAME in [layer.name for layer in model.layers]
    assert A.LAYER_NAME not in [layer.name for layer in stripped.layers]
    assert A.strip(plain) is plain
    plain.set_weights(stripped.get_weights())
    np.testing.assert_allclose(_np(model(IMAGES, training=False)),
                               _np(plain(IMAGES, training=False)), atol=1e-6)
    np.testing.assert_allclose(_np(stripped(IMAGES)), _np(plain(IMAGES)), atol=1e-6)
    # Called without `training`, the classifier predicts (Keras's random layers alone
    # would augment).
    np.testing.assert_allclose(_np(model(IMAGES)), _np(plain(IMAGES)), atol=1e-6)
    assert not np.allclose(_np(model(IMAGES, training=True)), _np(plain(IMAGES, training=True)),
                           atol=1e-4)


@pytest.mark.multibackend
def test_augmentation_runs_inside_the_compiled_training_step():
    x, y = IMAGES[:, :8, :8, :1].repeat(4, axis=0), np.arange(32) % 10

    def fit(augment):
        keras.utils.set_random_seed(0)
        model = pipeline.build_classifier("simple_cnn", (8, 8, 1), 10, augment=augment,
                                          augment_seed=0, augment_flip="none")
        optim.compile_with(model, Recipe(), steps_per_epoch=2, epochs=1)
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return [_np(w) for w in A.strip(model).weights]

    first = fit("default")
    for a, b in zip(fit("default"), first):  # seeded: the same training
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(fit("none"), first))


def _history(run_dir):
    with open(os.path.join(run_dir, T.HISTORY_FILE)) as f:
        return list(csv.DictReader(f))


def test_a_run_with_augmentation_resumes_records_and_exports_without_it(tmp_path, monkeypatch):
    # With a schedule and a loss of cnnzoo's, which model.keras's compile config holds.
    settings = dict(augment="default", flip="none", epochs=2, schedule="cosine",
                    warmup_epochs=1, label_smoothing=0.1, **KW)
    with monkeypatch.context() as patch:
        cut_after_first_epoch(patch)
        with pytest.raises(Cut):
            T.train("simple_cnn", out=tmp_path / "cut", **settings)
    resumed = T.train("simple_cnn", out=tmp_path / "cut", **settings)
    whole = T.train("simple_cnn", out=tmp_path / "whole", **settings)
    # The augmentation's seed states came back with the checkpoint.
    assert resumed.resumed_from == 1 and _history(tmp_path / "cut") == _history(tmp_path / "whole")
    plain = T.train("simple_cnn", out=tmp_path / "plain", **{**settings, "augment": "none"})
    assert plain.history["loss"] != whole.history["loss"]  # it did augment
    record = json.loads((tmp_path / "whole" / T.RUN_FILE).read_text())
    assert (record["config"]["augment"], record["config"]["flip"]) == ("default", "none")
    # The export leaves the augmentation out, and predicts as the trained model.
    out = tmp_path / "export"
    assert cli.main(["export", str(tmp_path / "whole"), "--out", str(out), "--format",
                     "keras"]) == 0
    with open(out / "model_card.json") as f:
        card = json.load(f)
    assert (card["model"]["config"]["augment"], card["model"]["config"]["flip"]) == (
        "default", "none")
    exported = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert not [layer.name for layer in exported.layers if layer.name.startswith("augment")]
    from cnnzoo.data import load_dataset

    images = load_dataset("digits", num_samples=200, seed=0).x_test
    np.testing.assert_allclose(exported.predict(images, verbose=0),
                               whole.model.predict(images, verbose=0), atol=1e-6)
    # A fresh process, which has imported none of the recipe, reads the finished run back.
    assert train_in_fresh_process(tmp_path / "whole", **settings) == f"2 {whole.test_metrics}"
