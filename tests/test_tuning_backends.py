"""The same small search, and the export of its best model, on every Keras backend.

Marked multibackend: CI runs it on TensorFlow (the default run), on JAX and
on torch (`KERAS_BACKEND=... pytest -m multibackend`; the backend is fixed
when Keras is imported, so each backend has its own run).
"""

import json

import keras
import numpy as np
import pytest

import tuning
from cnnzoo import export
from cnnzoo.data import load_dataset

pytestmark = pytest.mark.multibackend


def test_small_search_and_its_export_on_this_backend(tmp_path):
    backend = keras.backend.backend()
    result = tuning.search(out=tmp_path, max_trials=2, epochs=1, num_samples=120,
                           batch_size=42, precision="float32", quiet=True)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["search"]["backend"] == backend
    assert [t["status"] for t in saved["trials"]] == ["COMPLETED", "COMPLETED"]
    assert saved["best"]["trial"] in (1, 2) and result.best["trial"] == saved["best"]["trial"]
    assert saved["trials"][0]["val_accuracy"] == saved["best"]["val_accuracy"]
    # The best model is a SavedModel where TensorFlow is installed (it is a core
    # dependency): on JAX through jax2tf, on torch written by TensorFlow from the
    # model's .keras file. It reloaded to the search's model within float32
    # round-off, and scores here what the search's model scored on the test split.
    assert result.files["model"] == str(tmp_path / "best_model")
    card = json.loads((tmp_path / "best_model" / "model_card.json").read_text())
    assert card["format"] == "saved_model" and card["versions"]["keras_backend"] == backend
    assert card["verification"]["max_abs_diff"] <= export.FLOAT32_TOLERANCE
    ds = load_dataset("digits", num_samples=120, seed=0)  # the search's split
    probabilities = export.load_export(tmp_path / "best_model").predict(ds.x_test)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == ds.y_test))
    # One image either way: a near-tie of two classes may round the other way.
    assert abs(accuracy - result.test_metrics["accuracy"]) <= 1 / len(ds.y_test) + 1e-9
