"""The search driver end to end: results, resume, memory, NaN trials, set-up errors."""

import gc
import json
import os
import sys
import warnings
from typing import ClassVar

import keras
import keras_tuner as kt
import pytest

import tuning
from cnnzoo import cli
from tuning.hypermodel import ZooHyperModel
from tuning.tuners import SearchFailedError, ZooTunerMixin

# A small slice of digits: 140 train / 30 validation / 30 test images.
TINY = dict(num_samples=200, epochs=1, batch_size=35, precision="float32", quiet=True)


class FreshRandomSearch(ZooTunerMixin, kt.RandomSearch):
    """Keras Tuner's own run_trial for every trial: a fresh model each (no `ReuseMixin`)."""


class RecordingTuner(FreshRandomSearch):
    """Counts the objects and Keras layers still alive (and those frozen) after each trial."""

    counts = []

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        gc.collect()
        objects = gc.get_objects()
        layers = sum(isinstance(o, keras.layers.Layer) for o in objects)
        RecordingTuner.counts.append((len(objects), layers, gc.get_freeze_count()))


def test_small_search_end_to_end_then_resume(tmp_path, capsys):
    out = tmp_path / "search"
    RecordingTuner.counts = []
    result = tuning.search(out=out, max_trials=3, tuner_class=RecordingTuner, **TINY)
    assert capsys.readouterr().out == ""  # quiet: the export says nothing either

    assert result.role == "local" and not result.resumed
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 3
    scores = [r["score"] for r in result.trials]
    assert scores == sorted(scores, reverse=True)  # ranked best first
    assert result.best == result.trials[0]
    assert set(result.best["values"]) == {"dropout_rate", "block_dropout_rate", "dropout_type"}
    assert 0.0 <= result.test_metrics["accuracy"] <= 1.0
    saved = json.loads((out / "results.json").read_text())
    assert [t["trial"] for t in saved["trials"]] == [r["trial"] for r in result.trials]
    assert saved["search"]["model"] == "simple_cnn"
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("rank,trial,trial_id,status")
    assert (out / "objective_vs_rates.png").stat().st_size > 0
    assert os.path.isdir(result.files["model"])
    assert (out / "keras_tuner" / "oracle.json").exists()
    # The export's card keeps its own sections and adds the search's.
    card = json.loads((out / "best_model" / "model_card.json").read_text())
    assert card["model"]["name"] == "simple_cnn" and card["model"]["parameters"] > 0
    fixed = card["best_trial"]["fixed"]
    assert set(fixed) == {"activation", "learning_rate", "weight_decay", "label_smoothing"}
    assert card["model"]["config"] == {"model": "simple_cnn", **fixed, **result.best["values"]}
    assert card["model"]["dropout_layers"]
    assert card["input"]["name"] == "images" and card["input"]["range"] == [0, 255]
    assert card["training"]["metrics"]["test"] == result.test_metrics
    assert card["training"]["metrics"]["val"]["val_accuracy"] == result.best["val_accuracy"]
    assert card["best_trial"]["hyperparameters"] == result.best["values"]
    assert card["class_names"] == [str(i) for i in range(10)] and "classes" not in card

    # Memory: nothing of a trial outlives it. A trained simple_cnn left about
    # 12,000 objects (its TensorFlow graph, ~8 MB) behind before
    # tuning.memory; the oracle's own record of a trial is a few hundred.
    (first, first_layers, _), _, (last, last_layers, _) = RecordingTuner.counts
    assert last - first < 2000, RecordingTuner.counts
    assert first_layers == last_layers == 0, RecordingTuner.counts
    # Those collections walked only what the search made: what existed before
    # (TensorFlow's modules, ~460,000 objects) was frozen, and is no longer.
    assert min(frozen for *_, frozen in RecordingTuner.counts) > 100_000
    assert gc.get_freeze_count() == 0

    # The same search again resumes: nothing re-runs, nothing is lost.
    trial_files = sorted((out / "keras_tuner").glob("trial_*/trial.json"))
    stamps = [f.stat().st_mtime_ns for f in trial_files]
    capsys.readouterr()
    again = tuning.search(out=out, max_trials=3, export=False, **TINY)
    assert again.resumed
    assert capsys.readouterr().out == ""  # nor "Reloading Tuner from ...", Keras Tuner's
    assert sorted(r["trial_id"] for r in again.trials) == ["0", "1", "2"]
    assert [f.stat().st_mtime_ns for f in trial_files] == stamps
    # Run again with the export: the best model there is this trial's already, kept.
    card_file = out / "best_model" / "model_card.json"
    exported = card_file.stat().st_mtime_ns
    kept = tuning.search(out=out, max_trials=3, **TINY)
    assert card_file.stat().st_mtime_ns == exported
    assert kept.test_metrics == result.test_metrics
    assert kept.files["model"] == result.files["model"]

    # Other settings in the same folder are refused, not mixed in.
    with pytest.raises(ValueError, match="other settings.*seed"):
        tuning.search(out=out, max_trials=3, seed=1, export=False, **TINY)
    # So is a budget below the trials already started, and another precision
    # (its trials would score otherwise).
    settings = (out / "search.json").read_bytes()
    with pytest.raises(ValueError, match=r"at least the 3 trials.*Received: max_trials=2"):
        tuning.search(out=out, max_trials=2, export=False, **TINY)
    with pytest.raises(ValueError, match="other settings.*precision: 'float32' -> 'auto'"):
        tuning.search(out=out, max_trials=3, export=False, **{**TINY, "precision": "auto"})
    assert (out / "search.json").read_bytes() == settings
    # One search of a folder at a time: a second one while it runs is refused.
    from tuning import state

    running = pytest.raises(ValueError, match=f"Another search is running in {out} "
                                              f"\\(process {os.getpid()}\\)")
    with state.search_lock(out), running:
        tuning.search(out=out, max_trials=3, export=False, **TINY)
    assert (out / "search.json").read_bytes() == settings
    tuning.search(out=out, max_trials=3, export=False, **TINY)  # released


def test_every_trial_and_the_export_are_built_at_the_search_precision(tmp_path, monkeypatch):
    # Keras's clear_session (Keras Tuner's before each build, the search's
    # memory window after each trial) resets the global policy to float32;
    # the search must build every model at the precision it reports.
    built = []
    build_model = ZooHyperModel.build_model

    def recording(self, **values):
        model = build_model(self, **values)
        layers = list(model.layers)
        while not any(isinstance(layer, keras.layers.Conv2D) for layer in layers):
            layers = [inner for layer in layers for inner in getattr(layer, "layers", [])]
        conv = next(layer for layer in layers if isinstance(layer, keras.layers.Conv2D))
        built.append((values.get("tunable_dropout"), conv.dtype_policy.name))
        return model

    monkeypatch.setattr(ZooHyperModel, "build_model", recording)
    keras.config.set_dtype_policy("float32")
    try:
        result = tuning.search(out=tmp_path, max_trials=2,
                               **dict(TINY, precision="mixed_bfloat16"))
        after = keras.config.dtype_policy().name
    finally:
        keras.config.set_dtype_policy("float32")  # for the tests after this one
    assert json.loads((tmp_path / "results.json").read_text())["search"]["precision"] == \
        "mixed_bfloat16"
    # The preflight build, two trials (and the model reloaded for export),
    # then the export's plain-dropout copy.
    assert len(built) >= 4 and built[-1][0] is False, built
    assert {policy for _, policy in built} == {"mixed_bfloat16"}, built
    assert after == "float32"  # the caller's policy, put back
    assert os.path.isdir(result.files["model"])


@pytest.mark.parametrize("fresh", [False, True], ids=["reused", "keras-tuner-run-trial"])
def test_an_unreadable_best_checkpoint_is_trained_again_the_same_way(tmp_path, monkeypatch,
                                                                    capsys, fresh):
    # A distributed search without a shared folder: the chief cannot read the
    # worker's checkpoint, so it trains the best configuration again as the
    # search trained it (`train_again`), and exports the same model as from
    # the checkpoint.
    from tuning.tuners import ZooTunerMixin

    settings = dict(TINY, quiet=False, epochs=2)
    if fresh:
        settings["tuner_class"] = FreshRandomSearch
    from_checkpoint = tuning.search(out=tmp_path / "a", max_trials=2, **settings)

    def unreadable(self, trial):
        raise FileNotFoundError("the worker kept it")

    monkeypatch.setattr(ZooTunerMixin, "load_model", unreadable)
    keras.utils.set_random_seed(123)  # whatever else the process did in between
    retrained = tuning.search(out=tmp_path / "b", max_trials=2, **settings)
    assert capsys.readouterr().out.count("training its configuration again") == 1
    assert retrained.best["trial_id"] == from_checkpoint.best["trial_id"]
    assert retrained.test_metrics.keys() == from_checkpoint.test_metrics.keys()
    for name, value in from_checkpoint.test_metrics.items():
        # Another compiled model: the same numbers up to float32 rounding.
        assert retrained.test_metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert os.path.isdir(retrained.files["model"])


def test_a_fresh_model_tuner_seeds_each_trial_whatever_ran_before(tmp_path):
    # Keras Tuner's own run_trial (the mirrored strategy, or a tuner class of
    # one's own) fits on the arrays, which Keras shuffles with TensorFlow's
    # seed: each trial must set it.
    settings = dict(TINY, tuner_class=FreshRandomSearch, export=False)
    first = tuning.search(out=tmp_path / "a", max_trials=2, **settings)
    keras.utils.set_random_seed(123)  # whatever else the process did in between
    second = tuning.search(out=tmp_path / "b", max_trials=2, **settings)
    assert [(t["trial_id"], t["score"]) for t in first.trials] == \
        [(t["trial_id"], t["score"]) for t in second.trials]


def test_clear_session_keeps_the_precision():
    from cnnzoo import runtime

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        runtime.clear_session()
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        keras.backend.clear_session()  # what it guards against
        assert keras.config.dtype_policy().name == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


class DivergesAtHalf(ZooHyperModel):
    """Trials with a head rate of 0.5 get a learning rate that overflows the weights."""

    def build_model(self, **values):
        model = super().build_model(**values)
        if values["dropout_rate"] == 0.5:
            model.compile(optimizer=keras.optimizers.Adam(1e38),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


def _diverging(rates):
    return DivergesAtHalf("simple_cnn", input_shape=(8, 8, 1), num_classes=10,
                          dropout_rate=rates, block_dropout_rate=0.0, dropout_type="standard")


def test_a_nan_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path, monkeypatch):
    # Also: without a SavedModel exporter (JAX-only machines have no TensorFlow)
    # the best model is saved as .keras.
    monkeypatch.setitem(sys.modules, "cnnzoo.export", None)
    result = tuning.search(out=tmp_path, max_trials=2, hypermodel=_diverging([0.0, 0.5]),
                           **TINY)
    by_rate = {r["values"]["dropout_rate"]: r for r in result.trials}
    assert by_rate[0.0]["status"] == "COMPLETED"
    assert by_rate[0.5]["status"] == "FAILED"
    assert by_rate[0.5]["reason"] == "FailedTrialError: loss became nan at epoch 1"
    assert result.best is by_rate[0.0]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["trials"][-1]["reason"].startswith("FailedTrialError: loss became nan")
    assert result.files["model"] == str(tmp_path / "best_model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.saving.load_model(result.files["model"])
    assert reloaded.output_shape == (None, 10)
    # Saved with its optimizer built: nothing to skip when it is loaded.
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    card = json.loads((tmp_path / "best_model_card.json").read_text())
    assert card["best_trial"]["hyperparameters"]["dropout_rate"] == 0.0
    assert card["class_names"] == [str(i) for i in range(10)] and "classes" not in card


class SearchesBatchSize(ZooHyperModel):
    """A hypermodel with a fit of its own, as Keras Tuner's guide writes one."""

    calls: ClassVar[list] = []

    def fit(self, hp, model, *args, **kwargs):
        SearchesBatchSize.calls.append(hp.Choice("batch_size", [16, 64]))
        return super().fit(hp, model, *args, **dict(kwargs, batch_size=hp["batch_size"]))


def test_a_hypermodel_with_its_own_fit_trains_through_it(tmp_path):
    SearchesBatchSize.calls = []
    hypermodel = SearchesBatchSize("simple_cnn", input_shape=(8, 8, 1), num_classes=10,
                                   dropout_rate=[0.0, 0.5], block_dropout_rate=0.0,
                                   dropout_type="standard")
    result = tuning.search(out=tmp_path / "search", max_trials=2, hypermodel=hypermodel,
                           export=False, **TINY)
    assert len(SearchesBatchSize.calls) == 2
    assert all("batch_size" in r["values"] for r in result.trials)


class PlainBuild(kt.HyperModel):
    def build(self, hp):
        rate = hp.Choice("dropout_rate", [0.0, 0.5])
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dropout(rate),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


def test_a_plain_build_trains_every_trial_on_a_fresh_model(tmp_path):
    # A build(hp) may close over a searched value unseen: without a declared
    # `variable_hyperparameters` no compiled model is kept between trials.
    result = tuning.search(out=tmp_path / "plain", max_trials=2, hypermodel=PlainBuild(),
                           export=False, **TINY)
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 2
    assert {r["values"]["dropout_rate"] for r in result.trials} == {0.0, 0.5}


def test_an_export_that_fails_keeps_the_trials_results(tmp_path, monkeypatch):
    from tuning import driver

    def broken(*args, **kwargs):
        raise RuntimeError("injected export failure")

    monkeypatch.setattr(driver, "_export_best", broken)
    with pytest.raises(RuntimeError, match="injected"):
        tuning.search(out=tmp_path, max_trials=2, **TINY)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [t["status"] for t in saved["trials"]] == ["COMPLETED"] * 2
    assert (tmp_path / "results.csv").exists()


def test_repeated_failures_stop_the_search_with_its_state_saved(tmp_path):
    with pytest.raises(SearchFailedError, match="1 trials failed in a row.*loss became nan"):
        tuning.search(out=tmp_path, max_trials=2, hypermodel=_diverging([0.5, 0.6]),
                      max_consecutive_failures=1, export=False,
                      **dict(TINY, num_samples=100))
    trial = json.loads((tmp_path / "keras_tuner" / "trial_0" / "trial.json").read_text())
    assert trial["status"] == "FAILED"


def test_a_model_that_cannot_be_built_fails_before_any_trial(tmp_path):
    # simple_cnn needs at least 4x4 inputs (two 2x2 pools): the hypermodel
    # says so when it is made.
    with pytest.raises(ValueError, match=r"at least 4x4 for `simple_cnn`.*Received: input_size=2"):
        tuning.search(out=tmp_path, input_size=2, **TINY)
    assert not (tmp_path / "keras_tuner").exists()
    # A hypermodel that builds nothing is caught by the search's own trial build.
    import keras_tuner as kt

    class Broken(kt.HyperModel):
        def build(self, hp):
            hp.Float("dropout_rate", 0.0, 0.5)
            raise ValueError("no model here")

    with pytest.raises(ValueError, match=r"cannot be built for this data \(Broken on.*no model "
                                         r"here\. Received: model='Broken'"):
        tuning.search(out=tmp_path, hypermodel=Broken(), **TINY)
    assert not (tmp_path / "keras_tuner").exists()


def test_tune_converts_a_folder_of_mixed_channels_with_color_mode(tmp_path, capsys):
    from tests.test_data import _folder, _png

    root = _folder(str(tmp_path / "pets"), n=6)
    _png(os.path.join(root, "cat", "color.png"), mode="RGB")
    argv = ["tune", "--data", root, "--out", str(tmp_path / "out"), "--max-trials", "1",
            "--epochs", "1", "--batch-size", "4", "--precision", "float32", "--no-export",
            "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(--color-mode)" in err
    assert cli.main(argv + ["--color-mode", "rgb"]) == 0, capsys.readouterr().err
    settings = json.loads((tmp_path / "out" / "search.json").read_text())
    assert settings["color_mode"] == "rgb"
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED"]


def test_bad_data_exits_2_with_one_line(tmp_path, capsys):
    code = cli.main(["tune", "--data", str(tmp_path / "missing.npz"), "--out",
                     str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("cnnzoo tune: error:") and "missing.npz" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "keras_tuner").exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(tuner="grid"), "tuner='grid'"),
    (dict(max_trials=0), "max_trials=0"),
    (dict(objective="val_acc"), "Did you mean 'val_accuracy'"),
    (dict(worker="1"), "needs the chief's address"),
    (dict(chief="localhost"), "HOST:PORT"),
    (dict(chief="127.0.0.1:1", worker="chief2"), "not contain 'chief'"),
    ({"overwrite": "no"}, "Received: overwrite='no'"),
    ({"export": 1}, "Received: export=1"),
    ({"max_consecutive_failures": "x"}, "Received: max_consecutive_failures='x'"),
    ({"hypermodel": "x"}, "Received: hypermodel='x'"),
    ({"hypermodel_kwargs": {"input_size": 16}},
     r"`input_size` from the search.*Received: hypermodel_kwargs="),
    ({"hypermodel_kwargs": {"bogus": 1}},  # was a TypeError from ZooHyperModel
     r"`bogus` is not one \(they are .*dropout_rate.*Received: hypermodel_kwargs="),
])
def test_bad_arguments_fail_fast(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tuning.search(out=tmp_path, quiet=True, **kwargs)


def test_a_budget_below_the_trials_started_is_refused(tmp_path):
    # One trial ended and one interrupted (it runs again on resume): two
    # started, so max_trials=1 would end with two trials ("Trial 2/1").
    from tuning import driver

    for n, status in enumerate(["COMPLETED", "RUNNING"]):
        (tmp_path / "keras_tuner" / f"trial_{n}").mkdir(parents=True)
        (tmp_path / "keras_tuner" / f"trial_{n}" / "trial.json").write_text(
            json.dumps({"status": status}))
    settings = {"tuner": "random", "max_trials": 2}
    driver._check_settings(str(tmp_path), settings, overwrite=False)
    with pytest.raises(ValueError, match=r"at least the 2 trials.*Received: max_trials=1"):
        driver._check_settings(str(tmp_path), {**settings, "max_trials": 1}, overwrite=False)
    # A worker's are compared, never recorded, and its budget is the chief's.
    driver._check_settings(str(tmp_path), {**settings, "max_trials": 1}, False, worker=True)
    assert json.loads((tmp_path / "search.json").read_text())["max_trials"] == 2
    with pytest.raises(ValueError, match=r"chief's search.*tuner: 'random' -> 'bayesian'"):
        driver._check_settings(str(tmp_path), {**settings, "tuner": "bayesian"}, False,
                               worker=True)


def test_a_setting_search_json_predates_had_its_default(tmp_path):
    # A search.json written before `weights` was a setting: that search had
    # none, so resuming it from pretrained weights would mix two searches.
    from tuning import driver

    (tmp_path / "search.json").write_text(json.dumps({"tuner": "random", "max_trials": 2}))
    settings = {"tuner": "random", "max_trials": 2, "weights": None}
    driver._check_settings(str(tmp_path), settings, overwrite=False)
    (tmp_path / "search.json").write_text(json.dumps({"tuner": "random", "max_trials": 2}))
    with pytest.raises(ValueError, match=r"weights: None -> 'imagenet'"):
        driver._check_settings(str(tmp_path), {**settings, "weights": "imagenet"}, False)
