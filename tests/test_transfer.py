"""Fine-tuning (cnnzoo.transfer, train(weights=...)): the phases, resume, artefacts, bad input.

The backbone is resnet18 at 32x32 with random weights saved in timm's
layout (their values do not matter to what is tested: which variables move,
and that a resumed run equals an uninterrupted one to the last bit).
"""

import csv
import json
import os
import textwrap

import keras
import numpy as np
import pytest

import cnnzoo
from cnnzoo import cli, transfer
from cnnzoo import train as T
from tests.helpers import Cut, cut_after_first_epoch, kill_at, save_torch, torch_state

KW = dict(data="shapes", image_size=32, input_size=32, num_samples=60, batch_size=16,
          precision="float32", verbose=0, dropout_rate=0.2)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    return save_torch(torch_state("resnet18"), tmp_path_factory.mktemp("w") / "r18.safetensors")


def _values(model, names):
    body = transfer.zoo_body(model)
    return {n: [keras.ops.convert_to_numpy(w) for w in body.get_layer(n).weights] for n in names}


def _moved(before, after):
    return {n for n in before if any(not np.array_equal(a, b)
                                     for a, b in zip(before[n], after[n]))}


def test_phases_train_the_head_then_the_top_stages_with_batch_norm_frozen(resnet18_file):
    from cnnzoo import data

    dataset = data.load_dataset("shapes", image_size=32, num_samples=48)
    net = T.build_model("resnet18", dataset, weights=resnet18_file, tunable_dropout=True,
                        block_dropout_rate=0.0, dropout_rate=0.2)
    plan = transfer.check_plan("resnet18", weights=resnet18_file, fine_tune_epochs=1,
                               unfreeze=1, learning_rate=1e-3, block_dropout_rate=0.3)
    watched = ["stem_conv", "stem_bn", "conv4_block2_conv2", "conv5_block2_conv2",
               "conv5_block2_bn2", "predictions"]
    x, y = dataset.x_train, dataset.y_train

    transfer.set_phase(net, "resnet18", 1, plan)
    T.compile_model(net)
    before = _values(net, watched)
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    after = _values(net, watched)
    assert _moved(before, after) == {"predictions"}  # batch-norm statistics included

    transfer.set_phase(net, "resnet18", 2, plan)
    T.compile_model(net, learning_rate=plan.fine_tune_learning_rate)
    body = transfer.zoo_body(net)
    rates = {layer.name: float(layer.rate) for layer in body.layers
             if layer.name.endswith(("_drop1", "_drop"))}
    assert rates["conv5_block1_drop1"] == pytest.approx(0.3)
    assert rates["conv4_block2_drop1"] == 0.0 and rates["head_drop"] == pytest.approx(0.2)
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert _moved(after, _values(net, watched)) == {"conv5_block2_conv2", "predictions"}
    assert plan.fine_tune_learning_rate == pytest.approx(1e-4)


def test_every_backbone_layer_is_in_a_stage_or_the_stem():
    # The declared prefixes cover the layers they name, in stage order.
    for name in ("resnet50", "vgg16_bn", "mobilenet_v2", "densenet121"):
        info = cnnzoo.model_info(name)
        body = cnnzoo.create_model(name, input_shape=(32, 32, 3), num_classes=3)
        stages = [transfer.stage_of(info, layer.name)
                  for layer in body.layers[1:transfer.split_index(body)]]
        seen = [s for s in stages if s is not None]
        assert seen == sorted(seen) and set(seen) == set(range(info["stages"])), name
        first = stages.index(0)
        assert all(s is None for s in stages[:first]) and None not in stages[first:], name


_SCRIPT = textwrap.dedent("""
    import sys
    from cnnzoo import train as T
    T.train("resnet18", out=sys.argv[1], weights=sys.argv[2], epochs=2, fine_tune_epochs=2,
            unfreeze=1, block_dropout_rate=0.2, **{kw})
""")


def _history(run_dir):
    with open(os.path.join(run_dir, T.HISTORY_FILE)) as f:
        return list(csv.DictReader(f))


def test_a_run_killed_in_either_phase_resumes_to_the_same_artefacts(tmp_path, resnet18_file,
                                                                    monkeypatch):
    kwargs = dict(weights=resnet18_file, epochs=2, fine_tune_epochs=2, unfreeze=1,
                  block_dropout_rate=0.2, **KW)
    whole = T.train("resnet18", out=tmp_path / "whole", **kwargs)
    history = _history(tmp_path / "whole")
    assert [row["phase"] for row in history] == ["1", "1", "2", "2"]
    record = json.loads((tmp_path / "whole" / T.RUN_FILE).read_text())
    assert record["config"]["transfer"]["unfreeze"] == 1
    assert record["config"]["transfer"]["fine_tune_learning_rate"] == pytest.approx(1e-4)
    assert record["config"]["weights"] == resnet18_file

    # Phase 1, in this process: stopped right after epoch 1's checkpoint.
    with monkeypatch.context() as patch:
        cut_after_first_epoch(patch)
        with pytest.raises(Cut):
            T.train("resnet18", out=tmp_path / "cut", **kwargs)
    resumed = T.train("resnet18", out=tmp_path / "cut", **kwargs)
    assert resumed.resumed_from == 1
    assert _history(tmp_path / "cut") == history
    assert resumed.test_metrics == whole.test_metrics

    # Phase 2, a SIGKILL of another process after epoch 3.
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT.format(kw=repr(KW)))
    out = tmp_path / "killed"
    kill_at([script, out, resnet18_file], out / T.CHECKPOINT_DIR / "epoch-0003.npz")
    assert not (out / T.MODEL_FILE).exists()
    again = T.train("resnet18", out=out, **kwargs)
    assert again.resumed_from == 3
    assert _history(out) == history
    assert again.test_metrics == whole.test_metrics

    # The export takes raw pixels and predicts as the run's model did (its reload check);
    # the card records the weights and the recipe.
    from cnnzoo import export

    model, names, card = export.load_source(str(tmp_path / "whole"))
    written = export.export_model(model, str(tmp_path / "export"), format="keras",
                                  class_names=names, model_card=card)
    config = written["model"]["config"] if "model" in written else card["model"]["config"]
    assert config["transfer"]["fine_tune_epochs"] == 2 and config["weights"] == resnet18_file


def test_the_weights_training_size_is_the_default_input_size(resnet18_file):
    assert transfer.default_input_size("resnet18", resnet18_file, (32, 32, 3)) == 224
    assert transfer.default_input_size("resnet18", resnet18_file, (224, 224, 3)) is None
    # The progress output says why the images are resized.
    from cnnzoo import pipeline

    assert pipeline.describe_resize("resnet18", (32, 32), (224, 224), weights=resnet18_file) \
        == "32x32 images, resized to 224x224 inside the model: the weights' training size"
    assert pipeline.resize_reason("resnet18", (32, 32), (64, 64), weights=resnet18_file) \
        == "input_size"


@pytest.mark.parametrize("kwargs, name", [
    ({"model": "alexnet", "weights": "imagenet"}, "weights"),
    ({"fine_tune_epochs": 2}, "fine_tune_epochs"),
    ({"weights": "FILE", "fine_tune_epochs": 1, "unfreeze": 5}, "unfreeze"),
    ({"weights": "FILE", "unfreeze": 2}, "unfreeze"),
    ({"weights": "FILE", "drop_path_rate": 0.1}, "drop_path_rate"),
    ({"weights": "FILE", "block_dropout_rate": 0.1}, "block_dropout_rate"),
    ({"weights": "OTHER", "epochs": 1}, "weights"),
    ({"model": "vgg11", "weights": "imagenet", "input_size": 64}, "input_shape"),
])
def test_bad_fine_tuning_input_is_one_line_and_leaves_nothing(tmp_path, resnet18_file, kwargs,
                                                              name, monkeypatch):
    kwargs = dict(kwargs)
    model = kwargs.pop("model", "resnet18")
    if kwargs.get("weights") == "FILE":
        kwargs["weights"] = resnet18_file
    if kwargs.get("weights") == "OTHER":  # vgg11's file for resnet18
        kwargs["weights"] = save_torch(torch_state("vgg11"), tmp_path / "vgg11.safetensors")
    if model == "vgg11":  # refused by size before anything is fetched
        monkeypatch.setattr(cnnzoo.weights, "fetch", lambda *a: pytest.fail("fetched"))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"Received: {name}=") as error:
        T.train(model, out=out, **{**KW, "input_size": None, **kwargs})
    assert "\n" not in str(error.value)
    assert not out.exists()


def test_more_fine_tune_epochs_extend_a_finished_run_to_the_longer_run(tmp_path,
                                                                        resnet18_file):
    kwargs = dict(weights=resnet18_file, epochs=1, unfreeze=1, **KW)
    whole = T.train("resnet18", out=tmp_path / "whole", fine_tune_epochs=3, **kwargs)
    T.train("resnet18", out=tmp_path / "run", fine_tune_epochs=2, **kwargs)
    extended = T.train("resnet18", out=tmp_path / "run", fine_tune_epochs=3, **kwargs)
    assert extended.resumed_from == 3
    assert [r["phase"] for r in _history(tmp_path / "run")] == ["1", "2", "2", "2"]
    assert _history(tmp_path / "run") == _history(tmp_path / "whole")
    assert extended.test_metrics == whole.test_metrics
    record = json.loads((tmp_path / "run" / T.RUN_FILE).read_text())
    assert record["config"]["transfer"]["fine_tune_epochs"] == 3
    # Fewer is refused, one line, the run left as it is; so is another change with it.
    before = (tmp_path / "run" / T.RUN_FILE).read_text()
    with pytest.raises(ValueError, match=r"at least the 3 .*Received: fine_tune_epochs=2$"):
        T.train("resnet18", out=tmp_path / "run", fine_tune_epochs=2, **kwargs)
    with pytest.raises(ValueError, match=r"different configuration \(transfer.fine_tune_"
                                         r"epochs: 3 -> 4, transfer.unfreeze: 1 -> 2\)"):
        T.train("resnet18", out=tmp_path / "run", fine_tune_epochs=4,
                **{**kwargs, "unfreeze": 2})
    T.train("resnet18", out=tmp_path / "cos", fine_tune_epochs=1, schedule="cosine", **kwargs)
    with pytest.raises(ValueError, match=r"cosine learning-rate schedule, which spans its 1 "
                                         r"fine-tuning epoch;"):
        T.train("resnet18", out=tmp_path / "cos", fine_tune_epochs=2, schedule="cosine",
                **kwargs)
    assert (tmp_path / "run" / T.RUN_FILE).read_text() == before


def test_both_phases_train_with_the_recipe(tmp_path, resnet18_file):
    # SGD at its default 0.01, cosine over each phase; fine-tuning at a tenth of it;
    # the augmentation before the backbone.
    result = T.train("resnet18", out=str(tmp_path / "run"), weights=resnet18_file, epochs=2,
                     fine_tune_epochs=2, optimizer="sgd", schedule="cosine",
                     label_smoothing=0.1, augment="light", **KW)
    rows = _history(tmp_path / "run")
    assert [r["phase"] for r in rows] == ["1", "1", "2", "2"]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows],
                               [0.005, 0.0, 5e-4, 0.0], atol=1e-9)
    assert result.config["transfer"]["fine_tune_learning_rate"] == pytest.approx(1e-3)
    assert type(result.model.optimizer).__name__ == "SGD"
    assert result.model.loss.label_smoothing == 0.1
    assert result.config["augment"] == "light"


def test_cli_fine_tunes_and_refuses_in_one_line(tmp_path, resnet18_file, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--model", "resnet18", "--data", "shapes", "--image-size", "32",
                     "--input-size", "32", "--num-samples", "48", "--epochs", "1",
                     "--weights", resnet18_file, "--fine-tune-epochs", "1", "--unfreeze", "1",
                     "--verbose", "2", "--out", str(out), "--precision", "float32"])
    text = capsys.readouterr().out
    assert code == 0
    assert "Fine-tuning recipe: weights" in text and "Fine-tuning from epoch 2" in text
    assert "1 + 1 fine-tuning" in text
    assert "val_loss:" in text and "phase:" not in text  # the marker is no metric
    # More head epochs would come after the fine-tuning ones: refused, not reordered.
    before = (out / T.RUN_FILE).read_text()
    code = cli.main(["train", "--model", "resnet18", "--data", "shapes", "--image-size", "32",
                     "--input-size", "32", "--num-samples", "48", "--epochs", "2",
                     "--weights", resnet18_file, "--fine-tune-epochs", "1", "--unfreeze", "1",
                     "--out", str(out), "--precision", "float32"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "fine-tuning run's epochs cannot be extended" in err and "--overwrite" in err
    assert (out / T.RUN_FILE).read_text() == before
    code = cli.main(["train", "--fine-tune-epochs", "2", "--out", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "weights" in err
    assert not (tmp_path / "no").exists()
