"""`cnnzoo tune`'s TensorBoard logs: one folder per trial with its HParams summaries."""

import os

import keras
import keras_tuner as kt
import pytest

import tuning
from tuning.tuners import ZooTunerMixin, zoo_tuner_class

TINY = dict(num_samples=200, epochs=2, batch_size=35, precision="float32", quiet=True,
            export=False)

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="Keras Tuner writes TensorBoard logs on TensorFlow only")


class CountingSearch(zoo_tuner_class(kt.RandomSearch)):
    """The default tuner (compiled models reused), noting how many models it built."""

    built = []

    def on_search_end(self):
        CountingSearch.built.append(self.models_built)
        super().on_search_end()


class FreshRandomSearch(ZooTunerMixin, kt.RandomSearch):
    """Keras Tuner's own run_trial for every trial: a fresh model each."""


def _read(folder):
    """`({run folder: {tag: [values]}}, {run folder: hparams})` of the event files in `folder`."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import metadata

    scalars, hparams = {}, {}
    for root, _, files in os.walk(folder):
        for name in (f for f in files if f.startswith("events.out.tfevents.")):
            run = os.path.relpath(root, folder)
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                        if value.tag == metadata.SESSION_START_INFO_TAG:
                            info = metadata.parse_session_start_info_plugin_data(
                                value.metadata.plugin_data.content)
                            hparams[run] = {k: v.number_value if v.HasField("number_value")
                                            else v.string_value for k, v in info.hparams.items()}
                    else:
                        number = tf.make_ndarray(value.tensor)
                        scalars.setdefault(run, {}).setdefault(value.tag, []).append(
                            float(number))
    return scalars, hparams


@pytest.mark.parametrize("tuner_class", [CountingSearch, FreshRandomSearch])
def test_each_trial_writes_its_logs_and_hparams(tmp_path, tuner_class):
    CountingSearch.built = []
    out = tmp_path / "search"
    result = tuning.search(out=out, max_trials=2, tuner_class=tuner_class, **TINY)
    assert result.files["logs"] == str(out / "logs")
    scalars, hparams = _read(out / "logs")
    trials = {t["trial_id"]: t for t in result.trials}
    # Keras Tuner's layout: logs/<trial id>/execution0, with train/ and validation/.
    assert set(hparams) == {os.path.join(i, "execution0") for i in trials}
    for trial_id, trial in trials.items():
        run = os.path.join(trial_id, "execution0")
        for name, value in trial["values"].items():
            assert hparams[run][name] == pytest.approx(value), name
        assert len(scalars[os.path.join(run, "train")]["epoch_loss"]) == 2
        validation = scalars[os.path.join(run, "validation")]
        assert max(validation["epoch_accuracy"]) == pytest.approx(trial["val_accuracy"])
    if tuner_class is CountingSearch:
        assert CountingSearch.built == [1]  # both trials trained on one compiled model

    # Resumed with a larger budget: the new trial gets its folder too.
    more = tuning.search(out=out, max_trials=3, tuner_class=tuner_class, **TINY)
    assert more.resumed
    assert len(_read(out / "logs")[1]) == 3
