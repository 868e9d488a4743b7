"""A search from pretrained weights: heads trained on the frozen backbone's features, computed once.

The equivalence is checked at float32: the features computed in batches by
`predict` and the backbone run inside each training step differ by float32
rounding only. Measured here (TF 2.21, 2 CPU cores): after two epochs the
losses agree to 2e-7 relative and the classifier's weights to 4e-6 of their
largest; the tolerance is 1e-4. A wrong head (another seed: another
initialisation and other dropout masks) differs by more than 100% of it.
Fine-tuning trials trained on the output of the stages that stay frozen
(the top stage unfrozen for an epoch) meet the same tolerance.
"""

import json
import os
import textwrap

import keras
import keras_tuner as kt
import numpy as np
import pytest

import cnnzoo
import tuning
from cnnzoo import cli, commands, input_pipeline, runtime, transfer
from tests.helpers import kill_at, save_torch, torch_state
from tuning import features as feats
from tuning.hypermodel import ZooHyperModel

RTOL = 1e-4


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    return save_torch(torch_state("resnet18"), tmp_path_factory.mktemp("w") / "r18.safetensors")


@pytest.fixture(scope="module")
def shapes():
    return cnnzoo.data.load_dataset("shapes", image_size=32, num_samples=80, seed=0)


def _train(hypermodel, x, y, xv, yv, seed=3):
    hp = kt.HyperParameters()
    runtime.seed_trial(seed)
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, **input_pipeline.train_data(x, y, batch_size=16, seed=0),
                             validation_data=(xv, yv), epochs=2, verbose=0)
    return model, history.history


def test_a_head_on_cached_features_trains_as_the_whole_frozen_model(tmp_path, resnet18_file,
                                                                   shapes):
    kwargs = dict(input_shape=shapes.input_shape, num_classes=3, input_size=32,
                  weights=resnet18_file, dropout_rate=0.4)
    whole = ZooHyperModel("resnet18", **kwargs)
    head = ZooHyperModel("resnet18", features=True, **kwargs)
    f_train, f_val, path, how = feats.features_for(str(tmp_path), head, shapes.x_train,
                                                   shapes.x_val, precision="float32")
    assert how.startswith("computed") and os.path.isfile(path)

    end_to_end, h1 = _train(whole, shapes.x_train, shapes.y_train, shapes.x_val, shapes.y_val)
    on_features, h2 = _train(head, f_train, shapes.y_train, f_val, shapes.y_val)
    assert on_features.count_params() < end_to_end.count_params() / 100
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(h2[key], h1[key], rtol=RTOL, err_msg=key)
    ours = transfer.zoo_body(on_features).get_layer("predictions").get_weights()
    theirs = transfer.zoo_body(end_to_end).get_layer("predictions").get_weights()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max())

    # The exported model: the trained head on the pretrained backbone, taking images.
    hp = kt.HyperParameters()
    full = head.exportable(on_features, hp)
    np.testing.assert_allclose(full.predict(shapes.x_val, verbose=0),
                               end_to_end.predict(shapes.x_val, verbose=0), rtol=1e-3, atol=1e-5)

    # A second call (a resumed search, a worker) reads them.
    again = feats.features_for(str(tmp_path), head, shapes.x_train, shapes.x_val,
                               precision="float32")
    assert again[3] == "read" and np.array_equal(again[0], f_train)
    other = feats.features_for(str(tmp_path), head, shapes.x_train[:-1], shapes.x_val,
                               precision="float32")
    assert other[2] != path  # other images, another key


def test_fine_tuning_trials_on_the_frozen_stages_output_train_as_the_whole_model(
        tmp_path, resnet18_file, shapes):
    # Two epochs of the head, one with the top stage unfrozen (dropout 0.3 in it).
    kwargs = dict(input_shape=shapes.input_shape, num_classes=3, input_size=32,
                  weights=resnet18_file, dropout_rate=0.4, block_dropout_rate=0.3,
                  fine_tune_epochs=1, unfreeze=1)
    whole = ZooHyperModel("resnet18", **kwargs)
    part = ZooHyperModel("resnet18", features=True, **kwargs)
    f_train, f_val, path, _ = feats.features_for(str(tmp_path), part, shapes.x_train,
                                                 shapes.x_val, precision="float32")
    assert f_train.shape[1:] == (2, 2, 256)  # conv4's output: what conv5 takes
    end_to_end, h1 = _train(whole, shapes.x_train, shapes.y_train, shapes.x_val, shapes.y_val)
    on_features, h2 = _train(part, f_train, shapes.y_train, f_val, shapes.y_val)
    assert len(h1["loss"]) == 3
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(h2[key], h1[key], rtol=RTOL, err_msg=key)
    for name in ("conv5_block2_conv2", "predictions"):  # trained in phase 2
        ours = transfer.zoo_body(on_features).get_layer(name).get_weights()
        theirs = transfer.zoo_body(end_to_end).get_layer(name).get_weights()
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max(),
                                       err_msg=name)
    full = part.exportable(on_features, kt.HyperParameters())
    np.testing.assert_allclose(full.predict(shapes.x_val, verbose=0),
                               end_to_end.predict(shapes.x_val, verbose=0), rtol=1e-3, atol=1e-5)
    # Unfreezing every stage leaves nothing fixed: refused.
    with pytest.raises(ValueError, match=r"unfreeze=\"all\".*Received: features=True"):
        ZooHyperModel("resnet18", features=True, **{**kwargs, "unfreeze": [1, "all"]})


@pytest.mark.parametrize("name", ["vgg11", "densenet121", "mobilenet_v2"])
def test_every_family_splits_where_the_unfrozen_stages_start(name):
    """The frozen part's output, then the rest: the same outputs as the whole model."""
    from cnnzoo.pipeline import build_classifier

    model = build_classifier(name, (32, 32, 3), 3, tunable_dropout=True)
    info = cnnzoo.model_info(name)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for unfreeze in range(1, info["stages"]):
        end = transfer.frozen_end(model, name, [unfreeze])
        rest = transfer.head_model(model, start=end)
        cached = transfer.feature_extractor(model, end=end).predict(x, verbose=0)
        np.testing.assert_allclose(rest.predict(cached, verbose=0),
                                   model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
        # Only the unfrozen stages and the head are in the rest.
        stages = {transfer.stage_of(info, layer.name)
                  for layer in transfer.zoo_body(rest).layers} - {None}
        assert stages == transfer.unfrozen_stages(info, unfreeze), unfreeze


def test_a_search_from_weights_caches_resumes_and_exports(tmp_path, resnet18_file, capsys):
    kwargs = dict(data="shapes", image_size=32, input_size=32, num_samples=80,
                  weights=resnet18_file, epochs=2, out=str(tmp_path / "s"),
                  precision="float32", batch_size=16)
    first = tuning.search("resnet18", max_trials=2, **kwargs)
    text = capsys.readouterr().out
    assert "Features: the frozen backbone's outputs (512 per image)" in text
    assert "computed in" in text
    assert set(first.best["values"]) == {"dropout_rate"}  # the head's dropout alone
    card = json.loads(open(os.path.join(first.files["model"], "model_card.json")).read())
    assert card["search"]["weights"] == resnet18_file
    # Resumed with more trials: the features are read, not computed again.
    second = tuning.search("resnet18", max_trials=3, **kwargs)
    text = capsys.readouterr().out
    assert "validation images, read (" in text and len(second.trials) == 3
    # Without the cache: said, and the same search otherwise.
    tuning.search("resnet18", max_trials=1, cache_features=False,
                  **{**kwargs, "out": str(tmp_path / "plain")})
    assert "Features: not cached" in capsys.readouterr().out
    # With augmentation the backbone sees other images in every epoch: said, nothing cached.
    tuning.search("resnet18", max_trials=1, augment="light",
                  **{**kwargs, "out": str(tmp_path / "augmented")})
    assert "Features: not cached: the light augmentation" in capsys.readouterr().out
    assert not (tmp_path / "augmented" / "features").exists()


_SEARCH = textwrap.dedent("""
    import sys, tuning
    tuning.search("resnet18", out=sys.argv[1], weights=sys.argv[2], max_trials=3, **{kw})
""")


def test_a_search_from_weights_killed_mid_trial_resumes(tmp_path, resnet18_file, capsys):
    kwargs = dict(data="shapes", image_size=32, input_size=32, num_samples=80, epochs=2,
                  precision="float32", batch_size=16)
    out = tmp_path / "s"
    script = tmp_path / "job.py"
    script.write_text(_SEARCH.format(kw=repr(kwargs)))
    # SIGKILLed once the second trial began (the first is done, the features written).
    kill_at([script, out, resnet18_file], out / "keras_tuner" / "trial_1" / "trial.json")
    first = json.loads((out / "keras_tuner" / "trial_0" / "trial.json").read_text())
    assert first["status"] == "COMPLETED"
    result = tuning.search("resnet18", out=str(out), weights=resnet18_file, max_trials=3,
                           **kwargs)
    text = capsys.readouterr().out
    assert "validation images, read (" in text  # not computed again
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 3
    kept = next(r for r in result.trials if r["trial_id"] == "0")
    assert kept["score"] == pytest.approx(first["score"])  # not trained again
    assert os.path.isdir(result.files["model"])  # the head back on the backbone, exported


def test_both_phases_of_a_trial_compile_with_the_recipe(resnet18_file, shapes):
    from cnnzoo import recipe

    def settings(model):
        return (type(model.optimizer).__name__,
                float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                model.optimizer.weight_decay, model.loss.label_smoothing)

    hypermodel = ZooHyperModel("resnet18", input_shape=shapes.input_shape,
                               num_classes=shapes.num_classes, input_size=32,
                               weights=resnet18_file, fine_tune_epochs=1,
                               recipe=recipe.Recipe(optimizer="sgd", weight_decay=1e-4,
                                                    label_smoothing=0.1))
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    # The recipe's optimizer at its default rate (SGD's 0.01), and its loss.
    assert settings(model) == ("SGD", pytest.approx(0.01), 1e-4, 0.1)
    hypermodel.fit(hp, model, shapes.x_train, shapes.y_train, batch_size=16, epochs=1,
                   verbose=0)
    # The fine-tuning phase: a new SGD at a tenth of the rate, the same regularisation.
    assert settings(model) == ("SGD", pytest.approx(1e-3), 1e-4, 0.1)


def test_weights_fix_the_backbone_dropout(resnet18_file):
    with pytest.raises(ValueError, match=r"backbone is frozen.*Received: block_dropout_rate="):
        ZooHyperModel("resnet18", input_shape=(32, 32, 3), num_classes=3,
                      weights=resnet18_file, block_dropout_rate=(0.0, 0.2))
    with pytest.raises(ValueError, match=r"Received: features=True"):
        ZooHyperModel("resnet18", input_shape=(32, 32, 3), num_classes=3, features=True)


def test_a_fine_tuning_search_searches_the_unfrozen_stages(tmp_path, resnet18_file, capsys):
    result = tuning.search("resnet18", data="shapes", image_size=32, input_size=32,
                           num_samples=60, weights=resnet18_file, max_trials=2, epochs=1,
                           fine_tune_epochs=1, unfreeze=[1, "all"], out=str(tmp_path / "s"),
                           precision="float32", batch_size=16)
    text = capsys.readouterr().out
    assert "Features: not cached: with --unfreeze all" in text
    assert "fine_tune_learning_rate=learning_rate / 10" in text
    best = result.best
    assert {"dropout_rate", "block_dropout_rate", "unfreeze"} <= set(best["values"])
    assert best["epochs"] == 2  # one epoch of each phase
    card = json.loads(open(os.path.join(result.files["model"], "model_card.json")).read())
    assert card["search"]["fine_tune_epochs"] == 1 and card["search"]["unfreeze"] == [1, "all"]
    # The next command trains the best configuration with its fine-tuning, twice as long.
    lines = text.splitlines()
    command = lines[lines.index("Next:") + 2].split("   #")[0].split()
    args = cli._parser("train").parse_args(command[1:])
    commands.convert_types(args)
    assert (args.weights, args.epochs, args.fine_tune_epochs) == (resnet18_file, 2, 2)
    assert args.unfreeze == best["values"]["unfreeze"]
    assert args.block_dropout_rate == pytest.approx(best["values"]["block_dropout_rate"])
    assert args.fine_tune_learning_rate is None and args.input_size == 32
    # Trials that unfreeze one or two stages: the first two stages' output is cached.
    again = tuning.search("resnet18", data="shapes", image_size=32, input_size=32,
                          num_samples=60, weights=resnet18_file, max_trials=1, epochs=1,
                          fine_tune_epochs=1, unfreeze=[1, 2], out=str(tmp_path / "part"),
                          precision="float32", batch_size=16)
    assert ("Features: the outputs of the stages no trial unfreezes (4x4x128 per image)"
            in capsys.readouterr().out)
    assert again.best["epochs"] == 2 and os.path.isdir(again.files["model"])


def test_fine_tuning_settings_without_weights_are_refused_before_any_work(tmp_path, capsys):
    from cnnzoo import cli

    out = tmp_path / "s"
    with pytest.raises(ValueError, match=r"Received: fine_tune_epochs=2"):
        tuning.search("resnet18", fine_tune_epochs=2, out=str(out))
    with pytest.raises(ValueError, match=r"Received: unfreeze=1"):
        tuning.search("resnet18", weights="imagenet", unfreeze=1, out=str(out))
    code = cli.main(["tune", "--fine-tune-epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "weights" in err
    assert not out.exists()
