"""The training recipe in a search: settings, the hypermodel's compile, searched values, reuse."""

import io
import json

import keras
import keras_tuner as kt
import pytest

import tuning
from cnnzoo import cli, commands, recipe
from cnnzoo.recipe import Recipe
from tuning import config, reuse, tuners
from tuning.config import SearchConfig
from tuning.hypermodel import ZooHyperModel

DIGITS = dict(input_shape=(8, 8, 1), num_classes=10)
# A small slice of digits: 140 train / 30 validation / 30 test images.
TINY = dict(num_samples=200, epochs=1, batch_size=35, precision="float32", quiet=True)


def test_the_search_settings_hold_the_recipe():
    fields = {f.name: f for f in config.dataclasses.fields(SearchConfig)}
    for f in recipe.fields():  # every recipe setting, with the same default and option
        assert fields[f.name].default == f.default
        assert fields[f.name].metadata["cli"] == f.metadata["cli"]
    assert SearchConfig().recipe() == Recipe()  # the defaults: the search as it was
    parser = cli._parser("tune")
    args = parser.parse_args(["tune", "--optimizer", "sgd", "--schedule", "step",
                              "--warmup-epochs", "1", "--augment", "light", "--flip", "none",
                              "--weight-decay", "1e-4", "--search-weight-decay",
                              "--search-label-smoothing"])
    commands.convert_types(args)
    settings = config.from_arguments(args)
    assert settings.recipe() == Recipe(optimizer="sgd", schedule="step", warmup_epochs=1,
                                       augment="light", flip="none", weight_decay=1e-4)
    assert settings.hypermodel_kwargs == {"weight_decay": True, "label_smoothing": True}


@pytest.mark.parametrize("kwargs, received", [
    ({"optimizer": "rmsprop"}, r"optimizer='rmsprop'"),
    ({"label_smoothing": -0.1}, r"label_smoothing=-0\.1"),
    ({"warmup_epochs": 10}, r"warmup_epochs=10"),  # the search's 10 epochs
    # The search passes its recipe to the hypermodel itself.
    ({"hypermodel_kwargs": {"recipe": Recipe()}},
     r"hypermodel_kwargs=\{'recipe': Recipe\(.*"),
])
def test_bad_recipe_settings(kwargs, received):
    with pytest.raises(ValueError, match=f"Received: {received}$") as caught:
        SearchConfig(**kwargs)
    assert "\n" not in str(caught.value)


def test_the_hypermodel_compiles_with_the_recipe():
    r = Recipe(optimizer="sgd", schedule="cosine", warmup_epochs=1, clipnorm=1.0,
               label_smoothing=0.1, augment="light", flip="none")
    hm = ZooHyperModel("simple_cnn", recipe=r, steps_per_epoch=3, epochs=2, **DIGITS)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert hp.values == ZooHyperModel("simple_cnn", **DIGITS).defaults()  # nothing new searched
    assert type(model.optimizer) is keras.optimizers.SGD and model.optimizer.clipnorm == 1.0
    # The first of the 3 warm-up steps: a third of SGD's 0.01.
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01 / 3)
    assert model.loss.label_smoothing == 0.1
    assert [layer.name for layer in model.get_layer("augment").layers] == ["augment_translation"]
    # A schedule's peak is a constant of the traced step: not a variable.
    assert "learning_rate" not in hm.variable_hyperparameters
    assert "learning_rate" in ZooHyperModel("simple_cnn", **DIGITS).variable_hyperparameters
    assert hm.fixed_values()["learning_rate"] == 0.01  # SGD's default
    with pytest.raises(ValueError, match=r"spans them\. Received: epochs=None$"):
        ZooHyperModel("simple_cnn", recipe=r, **DIGITS)


def test_weight_decay_and_label_smoothing_take_the_learning_rates_vocabulary():
    def space(**kwargs):
        hp = kt.HyperParameters()
        model = ZooHyperModel("simple_cnn", **kwargs, **DIGITS).build(hp)
        return {p.name: p.get_config() for p in hp.space}, hp, model

    configs, hp, model = space(weight_decay=(1e-5, 1e-2), label_smoothing=(0.0, 0.2))
    assert configs["weight_decay"]["sampling"] == "log"
    assert configs["label_smoothing"]["sampling"] == "linear"
    configs, hp, model = space(weight_decay=True, label_smoothing=[0.1, 0.2])
    assert configs["weight_decay"]["values"] == [0.0, 1e-4, 1e-3, 1e-2, 5e-2]
    assert hp.values["label_smoothing"] == 0.1
    # The trial's values reach the optimizer and the loss.
    hm = ZooHyperModel("simple_cnn", weight_decay=[0.0, 1e-3], label_smoothing=[0.0, 0.2],
                       **DIGITS)
    hp = kt.HyperParameters()
    hm.declare(hp)
    hp.values.update(weight_decay=1e-3, label_smoothing=0.2)
    model = hm.build(hp)
    assert model.optimizer.weight_decay == 1e-3 and model.loss.label_smoothing == 0.2
    # Fixed: not declared, and what the model compiles with.
    configs, hp, model = space(weight_decay=0.01)
    assert "weight_decay" not in hp.values and model.optimizer.weight_decay == 0.01
    for kwargs, received in [({"weight_decay": -1.0}, "weight_decay=-1.0"),
                             ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
                             ({"weight_decay": (0.1, 0.01)}, "weight_decay=(0.1, 0.01)"),
                             ({"label_smoothing": []}, "label_smoothing=[]"),
                             ({"weight_decay": "high"}, "weight_decay='high'")]:
        with pytest.raises(ValueError) as caught:
            ZooHyperModel("simple_cnn", **kwargs, **DIGITS)
        assert str(caught.value).endswith(f"Received: {received}"), caught.value


def test_a_scheduled_learning_rate_is_part_of_the_compile_signature():
    r = Recipe(schedule="cosine")

    def signature(rate, rec):
        hm = ZooHyperModel("simple_cnn", recipe=rec, steps_per_epoch=2, epochs=2, **DIGITS)
        return reuse.compile_signature(hm.build_model(
            dropout_rate=0.0, block_dropout_rate=0.0, dropout_type="standard",
            learning_rate=rate, activation="relu"))

    assert signature(1e-3, r) != signature(1e-2, r)
    assert signature(1e-3, Recipe()) == signature(1e-2, Recipe())  # a variable


def test_trials_share_a_model_where_compiled_values_agree_and_the_output_says_so(tmp_path):
    from cnnzoo.data import load_dataset

    ds = load_dataset("digits", num_samples=200, seed=0)
    hm = ZooHyperModel("simple_cnn", weight_decay=[0.0, 1e-3], block_dropout_rate=0.0,
                       dropout_type="standard", input_shape=ds.input_shape,
                       num_classes=ds.num_classes)
    stream = io.StringIO()
    tuner = tuners.make_tuner("random", hm, directory=tmp_path, max_trials=5, seed=0,
                              stream=stream)
    assert reuse.sharing(tuner) == (
        "trials share one only where they agree on weight_decay (compiled into the training "
        "step, not held in variables; dropout_rate is a variable of the model)")
    tuner.search(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val), epochs=1,
                 batch_size=35, verbose=0)
    decays = [t.hyperparameters.values["weight_decay"]
              for _, t in sorted(tuner.oracle.trials.items())]
    assert len(set(decays)) == 2
    changes = sum(a != b for a, b in zip(decays, decays[1:]))
    assert tuner.models_built == 1 + changes
    assert stream.getvalue().count("  a new compiled model: weight_decay=") == changes
    assert reuse.sharing(tuners.make_tuner(
        "random", ZooHyperModel("simple_cnn", **DIGITS), directory=tmp_path / "b",
        max_trials=1, seed=0, quiet=True)) == (
        "one for every trial (dropout_rate, block_dropout_rate, dropout_type are variables "
        "of the model)")


def test_a_search_with_a_recipe_resumes_and_an_older_one_has_the_defaults(tmp_path, capsys):
    out = tmp_path / "search"
    result = tuning.search(out=out, max_trials=1, export=False, **TINY)
    # A search.json written before the recipe: its searches had the defaults.
    path = out / config.SETTINGS_FILE
    old = json.loads(path.read_text())
    for key in recipe.defaults():
        del old[key]
    path.write_text(json.dumps(old))
    again = tuning.search(out=out, max_trials=2, export=False, **TINY)
    assert again.resumed and len(again.trials) == 2
    with pytest.raises(ValueError, match=r"schedule: 'constant' -> 'cosine'"):
        tuning.search(out=out, max_trials=2, export=False, schedule="cosine", **TINY)
    # A search with a recipe records it, and its trials train with it.
    out = tmp_path / "sgd"
    code = cli.main(["tune", "--out", str(out), "--max-trials", "1", "--epochs", "2",
                     "--num-samples", "200", "--precision", "float32", "--no-export",
                     "--optimizer", "sgd", "--schedule", "cosine", "--warmup-epochs", "1",
                     "--augment", "light", "--flip", "none"])
    printed = capsys.readouterr().out
    assert code == 0
    assert ("Recipe: sgd (momentum 0.9, Nesterov), learning rate 0.01, cosine schedule after "
            "1 warm-up epoch, light augmentation (no flip)") in printed
    recorded = json.loads((out / config.SETTINGS_FILE).read_text())
    assert {k: recorded[k] for k in recipe.defaults()} == {
        **recipe.defaults(), "optimizer": "sgd", "schedule": "cosine", "warmup_epochs": 1,
        "augment": "light", "flip": "none"}
    assert result.best is not None


def test_a_search_ends_with_the_next_commands_and_its_train_command_runs(tmp_path):
    stream = io.StringIO()
    result = tuning.search(out=tmp_path / "s", max_trials=1, export=False, stream=stream,
                           **{**TINY, "quiet": False}, augment="light", flip="none",
                           hypermodel_kwargs={"per_stage": True, "weight_decay": [1e-3]})
    lines = stream.getvalue().splitlines()
    command = lines[lines.index("Next:") + 1].split("   #")[0].split()
    assert command[:2] == ["cnnzoo", "train"]
    assert cli.main(command[1:] + ["--verbose", "0"]) == 0
    with open(tmp_path / "s" / "best_run" / "run.json") as f:
        trained = json.load(f)["config"]
    values = result.best["values"]
    assert trained["dropout_rate"] == values["dropout_rate"]
    assert trained["block_dropout_rate"] == [values["block_dropout_rate_1"],
                                             values["block_dropout_rate_2"]]
    assert (trained["augment"], trained["flip"], trained["weight_decay"]) == (
        "light", "none", 1e-3)
    assert trained["epochs"] == 2 and trained["data"]["num_samples"] == 200
