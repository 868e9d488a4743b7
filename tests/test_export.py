"""cnnzoo.export: SavedModel reloads three ways, atomic writes, model cards, bad input."""

import json
import os
import shutil

import keras
import numpy as np
import pytest

from cnnzoo import _compat_keras, cli
from cnnzoo import export as E
from cnnzoo import train as T
from cnnzoo.data import load_dataset
from tests.helpers import needs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    T.train("simple_cnn", "digits", out=out, epochs=2, num_samples=200, batch_size=64,
            precision="float32", dropout_rate=0.25, verbose=0)
    keras.config.set_dtype_policy("float32")
    return out


@pytest.fixture()
def model(run_dir):
    return keras.saving.load_model(run_dir / T.MODEL_FILE, safe_mode=True)


@pytest.fixture(scope="module")
def images():
    ds = load_dataset("digits", num_samples=200, seed=0)
    return ds.x_test[:16]


def test_saved_model_reloads_three_ways(model, images, tmp_path):
    import tensorflow as tf

    path = tmp_path / "sm"
    names = [f"digit {i}" for i in range(10)]
    card = E.export_saved_model(model, path, class_names=names, verify_batch=images,
                                model_card={"training": {"note": "test"}}, verbose=False)
    expected = model.predict(images, verbose=0)
    # 1. tf.saved_model.load and the serving signature: named input and output.
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["images"]
    assert list(signature.structured_outputs) == ["probabilities"]
    got = signature(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # 2. keras.layers.TFSMLayer.
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)["probabilities"]),
                               expected, atol=1e-6)
    # 3. cnnzoo's own loader (what `cnnzoo predict` uses).
    np.testing.assert_allclose(E.load_export(path).predict(images), expected, atol=1e-6)

    on_disk = json.loads((path / E.CARD_FILE).read_text())
    assert {k: v for k, v in card.items() if k != "path"} == on_disk
    assert on_disk["class_names"] == names
    assert on_disk["model"]["name"] == "simple_cnn"
    assert on_disk["model"]["parameters"] == model.count_params()
    assert on_disk["model"]["dropout_layers"] == [
        {"name": "fc1_drop", "class": "Dropout", "rate": 0.25}]
    assert on_disk["model"]["hidden_activations"] == {"ReLU": 3}
    assert on_disk["input"]["name"] == "images" and on_disk["input"]["shape"] == [None, 8, 8, 1]
    assert on_disk["preprocessing"][-1]["scale"] == pytest.approx(1 / 255)
    assert on_disk["training"] == {"note": "test"}
    assert on_disk["versions"]["keras"] == keras.__version__
    check = on_disk["verification"]
    assert check["passed"] and check["max_abs_diff"] <= 1e-5 and check["batch_size"] == 16


def test_serving_layout_and_overwrite(model, tmp_path):
    base = tmp_path / "serving" / "digits"
    E.export_saved_model(model, base, serving_version=1, verbose=False)
    E.export_saved_model(model, base, serving_version=2, verbose=False)
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert (base / "2" / "saved_model.pb").exists() and (base / "2" / E.CARD_FILE).exists()
    assert E.load_export(base).path == str(base / "2")  # the newest version
    with pytest.raises(ValueError, match="target exists.*overwrite"):
        E.export_saved_model(model, base, serving_version=2, verbose=False)
    card = E.export_saved_model(model, base, serving_version=2, overwrite=True, verbose=False)
    assert card["serving"]["version"] == 2
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary siblings left


def _snapshot(folder):
    return {os.path.relpath(os.path.join(root, f), folder):
            open(os.path.join(root, f), "rb").read()
            for root, _, files in os.walk(folder) for f in files}


def test_failure_between_write_and_rename_keeps_old_export(model, tmp_path, monkeypatch):
    path = tmp_path / "sm"
    E.export_saved_model(model, path, verbose=False)
    before = _snapshot(path)

    def broken_reload(folder, batch):
        assert os.path.exists(os.path.join(folder, "saved_model.pb"))  # written, not renamed
        raise RuntimeError("injected failure")

    monkeypatch.setitem(E._RELOADERS, "saved_model", broken_reload)
    with pytest.raises(RuntimeError, match="injected"):
        E.export_saved_model(model, path, overwrite=True, verbose=False)
    assert _snapshot(path) == before
    assert os.listdir(tmp_path) == ["sm"]
    with pytest.raises(RuntimeError, match="injected"):
        E.export_saved_model(model, tmp_path / "new", verbose=False)
    assert os.listdir(tmp_path) == ["sm"]


def test_disagreeing_reload_fails_loudly(model, tmp_path, monkeypatch):
    real = E._RELOADERS["keras"]

    def off_by_a_bit(folder, batch):
        out, how = real(folder, batch)
        return out + 1e-3, how

    monkeypatch.setitem(E._RELOADERS, "keras", off_by_a_bit)
    with pytest.raises(E.ExportVerificationError, match=r"max \|difference\| 0\.001 > "):
        E.export_model(model, tmp_path / "k", format="keras", verbose=False)
    assert os.listdir(tmp_path) == []


def _needs_keras_for(fmt):
    """Skips where the installed Keras's `Model.export` cannot write `fmt`."""
    needs = _compat_keras.export_format_missing(E.KERAS_EXPORT_FORMAT[fmt])
    return pytest.mark.skipif(needs is not None,
                              reason=f"pip install 'keras>={needs}' (format={fmt})")


@_needs_keras_for("tflite")
def test_keras_and_tflite_formats(model, images, tmp_path, capfd):
    expected = model.predict(images, verbose=0)
    card = E.export_model(model, tmp_path / "k", format="keras", verbose=False)
    assert card["artifact"] == "model.keras"
    again = keras.saving.load_model(tmp_path / "k" / "model.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(images, verbose=0), expected, atol=1e-6)
    card = E.export_model(model, tmp_path / "t", format="tflite", verbose=False)
    assert card["verification"]["passed"]
    np.testing.assert_allclose(E.load_export(tmp_path / "t").predict(images), expected,
                               atol=1e-5)
    assert "XNNPACK" not in capfd.readouterr().err  # LiteRT's notice, from C++


@_needs_keras_for("onnx")
def test_onnx_format(model, images, tmp_path):
    for module in E.EXTRAS["onnx"]:
        needs(module, module, "onnx")
    expected = model.predict(images, verbose=0)
    card = E.export_model(model, tmp_path / "o", format="onnx", verbose=False)
    assert card["artifact"] == "model.onnx"
    assert card["verification"]["reloaded_with"] == "onnxruntime"
    assert card["verification"]["passed"]
    assert sorted(os.listdir(tmp_path / "o")) == sorted([E.CARD_FILE, "model.onnx"])
    loaded = E.load_export(tmp_path / "o")
    assert loaded.format == "onnx"
    np.testing.assert_allclose(loaded.predict(images), expected, atol=1e-5)


def test_mixed_precision_model_exports(tmp_path):
    from cnnzoo.pipeline import build_classifier

    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_classifier("simple_cnn", (8, 8, 1), 3)
    keras.config.set_dtype_policy("float32")
    card = E.export_saved_model(model, tmp_path / "sm", verbose=False)
    assert "mixed_bfloat16" in card["model"]["dtype_policy"]
    assert card["verification"]["tolerance"] == E.MIXED_TOLERANCE
    # TFLite gets a float32 copy (standard runtimes lack bfloat16 kernels).
    card = E.export_model(model, tmp_path / "t", format="tflite", verbose=False)
    assert card["verification"]["compute_dtype"] == "float32"
    assert card["verification"]["float32_copy_max_abs_diff_vs_trained"] < E.MIXED_TOLERANCE
    card = E.export_model(model, tmp_path / "o", format="onnx", verbose=False)  # the same
    assert card["verification"]["compute_dtype"] == "float32" and card["verification"]["passed"]


def test_cli_export_from_run_dir(run_dir, tmp_path, capsys):
    out = tmp_path / "exported"
    assert cli.main(["export", str(run_dir), "--out", str(out)]) == 0
    assert "max |difference|" in capsys.readouterr().out
    card = json.loads((out / E.CARD_FILE).read_text())
    assert card["model"]["config"]["dropout_rate"] == 0.25
    assert card["model"]["config"]["model"] == "simple_cnn"
    assert card["training"]["metrics"]["test"]["accuracy"] >= 0
    assert card["training"]["data"]["name"] == "digits"
    # An existing target without --overwrite: exit 2, one line, nothing changed.
    before = _snapshot(out)
    assert cli.main(["export", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "target exists" in err and str(out) in err and len(err.splitlines()) == 1
    assert _snapshot(out) == before
    assert cli.main(["export", str(run_dir), "--out", str(out), "--overwrite",
                     "--format", "keras"]) == 0
    assert sorted(os.listdir(out)) == sorted([E.CARD_FILE, "model.keras"])


def _cli_error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_cli_bad_input(run_dir, tmp_path, capsys):
    not_a_model = tmp_path / "fake.keras"
    not_a_model.write_text("hello")
    out = tmp_path / "out"
    err = _cli_error(capsys, ["export", str(not_a_model), "--out", str(out)])
    assert "fake.keras" in err and "not a .keras model file (a .keras file is a zip" in err
    err = _cli_error(capsys, ["export", str(tmp_path / "missing.keras"), "--out", str(out)])
    assert "does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _cli_error(capsys, ["export", str(empty), "--out", str(out)])
    assert "run.json" in err
    # A location that cannot be written (sysfs refuses even root).
    if os.geteuid() == 0:
        readonly = "/sys/cnnzoo-export-test/out"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        readonly = str(locked / "out")
    err = _cli_error(capsys, ["export", str(run_dir), "--out", readonly])
    assert "Could not write" in err and readonly in err
    assert not os.path.exists(readonly)
    err = _cli_error(capsys, ["export", str(run_dir), "--out", str(out), "--format", "keras",
                              "--serving-version", "1"])
    assert "serving_version" in err
    assert sorted(os.listdir(tmp_path)) == ["empty", "fake.keras"]


def test_overwrite_replaces_only_an_earlier_export(run_dir, model, tmp_path, capsys,
                                                  monkeypatch):
    # --overwrite must never delete what is not an export: the run being
    # exported, a folder of the user's, the folder the user is in.
    before = _snapshot(run_dir)
    err = _cli_error(capsys, ["export", str(run_dir), "--out", str(run_dir), "--overwrite"])
    assert "holds no cnnzoo export" in err and err.endswith(f"Received: path='{run_dir}'")
    assert _snapshot(run_dir) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "important.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds no cnnzoo export"):
        E.export_saved_model(model, mine, overwrite=True, verbose=False)
    assert os.listdir(mine) == ["important.txt"]
    a_file = tmp_path / "afile.txt"
    a_file.write_text("x")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"Expected `path` to be a folder.*is a file"):
            E.export_saved_model(model, a_file, overwrite=overwrite, verbose=False)
    assert a_file.read_text() == "x"
    export = tmp_path / "export"
    E.export_saved_model(model, export, verbose=False)
    (export / "inner").mkdir()
    monkeypatch.chdir(export / "inner")
    with pytest.raises(ValueError, match="is or holds the current folder"):
        E.export_saved_model(model, export, overwrite=True, verbose=False)
    monkeypatch.chdir(tmp_path)
    # An earlier export, and an empty folder, are replaced.
    E.export_saved_model(model, export, overwrite=True, verbose=False)
    assert not (export / "inner").exists() and (export / E.CARD_FILE).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    E.export_saved_model(model, empty, overwrite=True, verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["afile.txt", "empty", "export", "mine"]


def test_an_export_killed_between_its_renames_is_put_back(model, tmp_path):
    # `atomic_dir` renames the old export aside, then the new one into place:
    # a kill in between leaves `.NAME.old-*` and no export at all.
    path = tmp_path / "sm"
    E.export_saved_model(model, path, verbose=False)
    before = _snapshot(path)
    os.replace(path, tmp_path / ".sm.old-abc123")
    with pytest.raises(ValueError, match="target exists"):  # it is back
        E.export_saved_model(model, path, verbose=False)
    assert _snapshot(path) == before and sorted(os.listdir(tmp_path)) == ["sm"]
    # Killed after the second rename: the old one is only removed.
    (tmp_path / ".sm.old-def456").mkdir()
    E.export_saved_model(model, path, overwrite=True, verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["sm"]
    # Killed while the replaced export was being removed: `.NAME.del-*` is
    # partial, and is removed, never put back, even where the export is gone.
    (tmp_path / ".sm.del-ghi789").mkdir()
    (tmp_path / ".sm.del-ghi789" / "variables").mkdir()
    shutil.rmtree(path)
    E.export_saved_model(model, path, verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["sm"]
    assert (path / E.CARD_FILE).exists()


def test_missing_extra_names_the_install_command(model, tmp_path, monkeypatch):
    monkeypatch.setitem(E.EXTRAS, "onnx", ("cnnzoo_missing_module",))
    with pytest.raises(ValueError, match=r"pip install 'cnnzoo\[onnx\]'"):
        E.export_model(model, tmp_path / "o", format="onnx", verbose=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("fmt,needs", [("tflite", "3.13"), ("onnx", "3.8")])
def test_formats_an_older_keras_cannot_write_are_refused(model, tmp_path, monkeypatch, fmt,
                                                         needs):
    # Keras 3.7's Model.export ignored `format` and wrote a SavedModel as model.tflite.
    monkeypatch.setattr(keras, "__version__", "3.7.0")
    with pytest.raises(ValueError, match=rf"needs Keras {needs} or newer \(Keras 3\.7\.0 is "
                                         rf"installed\): pip install 'keras>={needs}'\. "
                                         rf"Received: format='{fmt}'"):
        E.export_model(model, tmp_path / "x", format=fmt, verbose=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kwargs,message", [
    ({"format": "pb"}, "format"), ({"serving_version": 0}, "serving_version"),
    ({"class_names": ["a", "b"]}, "10 class names"), ({"model_card": "x"}, "model_card"),
    ({"verify_batch": np.zeros((2, 9, 9, 1))}, "verify_batch"), ({"tolerance": -1}, "tolerance"),
    # A truthy string used to replace the export; a string was split into names.
    ({"overwrite": "false"}, "overwrite='false'"), ({"verbose": "no"}, "verbose='no'"),
    ({"class_names": "0123456789"}, "list of names.*class_names='0123456789'"),
])
def test_bad_arguments(model, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        E.export_model(model, tmp_path / "x", **{"verbose": False, **kwargs})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_tensorflow_only_formats_are_refused_on_other_backends(model, tmp_path, monkeypatch,
                                                              fmt):
    # On JAX, Keras's own errors came after the work: "LiteRT export requires
    # TensorFlow or PyTorch backend", "The model provided has never called".
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match=f"TensorFlow backend for format='{fmt}'.*"
                                         f"Received: format='{fmt}'"):
        E.export_model(model, tmp_path / "x", format=fmt, verbose=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.multibackend
@pytest.mark.parametrize("fmt", ["saved_model", "keras"])
def test_an_export_made_on_this_backend_reloads_to_its_numbers(model, images, tmp_path, fmt):
    # On torch the SavedModel is written by TensorFlow from the model's .keras
    # file (Keras's torch ExportArchive needs torch_xla), then reloaded and
    # compared here as every export is.
    card = E.export_model(model, tmp_path / fmt, format=fmt, verify_batch=images, verbose=False)
    assert card["versions"]["keras_backend"] == keras.backend.backend()
    assert card["verification"]["max_abs_diff"] <= E.FLOAT32_TOLERANCE
    np.testing.assert_allclose(E.load_export(tmp_path / fmt).predict(images),
                               model.predict(images, verbose=0), atol=E.FLOAT32_TOLERANCE)


def test_a_torch_saved_model_needs_tensorflow_and_fails_whole(model, tmp_path, monkeypatch):
    # Without TensorFlow an ImportError, as on JAX (the search then saves
    # best_model.keras); a writer that fails says why, and leaves nothing.
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with monkeypatch.context() as patch:
        patch.setattr(E.v, "module_installed", lambda name: name != "tensorflow")
        with pytest.raises(ImportError, match="a SavedModel needs TensorFlow"):
            E.export_model(model, tmp_path / "x", verbose=False)
    monkeypatch.setattr(E, "_SAVED_MODEL_FROM_KERAS", "raise SystemExit('disk full')")
    with pytest.raises(RuntimeError, match="TensorFlow could not write the SavedModel of the "
                                           "torch model: disk full"):
        E.export_model(model, tmp_path / "x", verbose=False)
    assert os.listdir(tmp_path) == []


def test_an_unbuilt_model_is_a_value_error(tmp_path):
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Expected a built model"):
        E.export_model(unbuilt, tmp_path / "x", verbose=False)


def test_the_card_says_what_size_to_feed():
    # "resizing happens inside the model" misled where the model resizes
    # nothing (`--image-size` resized while loading): the input's size is
    # what to feed.
    from cnnzoo.pipeline import build_classifier

    plain, inner = (E.build_card(build_classifier("simple_cnn", (8, 8, 1), 3, input_size=size),
                                 format="keras", artifact="x", class_names=None,
                                 verification={})["input"]["description"]
                    for size in (None, 16))
    assert plain.startswith("raw pixels (0-255) of 8x8 images") and "resizes" not in plain
    assert "the model resizes them to 16x16 (input_size)" in inner
    # Images below the model's minimum: the card says why they are resized.
    small = E.build_card(build_classifier("lenet5", (8, 8, 1), 3), format="keras", artifact="x",
                         class_names=None, verification={})["input"]["description"]
    assert "the model resizes them to 32x32 (lenet5's minimum)" in small


def test_progress_says_why_images_are_resized():
    from cnnzoo import pipeline

    assert pipeline.describe_resize("vgg16", (8, 8, 1), (32, 32)) == (
        "8x8 images, resized to 32x32 inside the model: vgg16's minimum")
    assert pipeline.describe_resize("vgg16", (8, 40, 1), (32, 40)).endswith("vgg16's minimum")
    assert pipeline.describe_resize("vgg16", (64, 64, 3), (96, 96)).endswith("(input_size)"[1:-1])
    assert pipeline.describe_resize("vgg16", (64, 64, 3), (64, 64)) == "64x64 images, fed as they are"
    assert pipeline.describe_resize("vgg16", (64, 64, 3), (64, 64), unchanged=None) is None


def test_tflite_card_describes_the_float32_copy(tmp_path):
    from cnnzoo.pipeline import build_classifier

    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_classifier("simple_cnn", (8, 8, 1), 3)
    keras.config.set_dtype_policy("float32")
    card = E.export_model(model, tmp_path / "t", format="tflite", verbose=False)
    assert card["model"]["dtype_policy"] == ["float32"]
    assert card["model"]["name"] == "simple_cnn"


@pytest.mark.parametrize("kind", ["saved_model", "keras"])
def test_loaded_export_checks_the_image_shape(model, images, tmp_path, kind):
    E.export_model(model, tmp_path / kind, format=kind, verbose=False)
    loaded = E.load_export(tmp_path / kind)
    # One unbatched image used to abort the process (a TensorFlow check).
    for bad in (images[0], images[:2, :7], np.zeros((1, 8, 8, 3)), images[:0]):
        with pytest.raises(ValueError, match=r"\(N, 8, 8, 1\).*Received: images.shape="):
            loaded.predict(bad)
    assert loaded.predict(images[:2]).shape == (2, 10)


def test_exports_that_take_any_size_or_no_images_are_refused(tmp_path, capsys):
    inputs = keras.Input((None, None, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled)).save(
        tmp_path / "any.keras")
    flat = keras.Input((64,))
    keras.Model(flat, keras.layers.Dense(2)(flat)).save(tmp_path / "flat.keras")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("L", (8, 8)).save(image)
    for name, shape in (("any.keras", "(None, None, None, 1)"), ("flat.keras", "(None, 64)")):
        err = _cli_error(capsys, ["predict", str(tmp_path / name), str(image)])
        assert f"fixed-size images (N, H, W, C); {tmp_path / name} takes {shape}" in err
        assert "Received: path=" in err


def test_a_keras_export_exported_again_keeps_its_card(run_dir, tmp_path):
    # `.keras` beside a model card (an export): the names, config and
    # training record travel on; they used to become "0", "1", ... and null.
    E.export_model(*E.load_source(run_dir)[:1], tmp_path / "k", format="keras", verbose=False,
                   class_names=[f"d{i}" for i in range(10)],
                   model_card=E.load_source(run_dir)[2])
    model, names, fields = E.load_source(tmp_path / "k" / "model.keras")
    assert names == [f"d{i}" for i in range(10)]
    E.export_saved_model(model, tmp_path / "sm", class_names=names, model_card=fields,
                         verbose=False)
    first = json.loads((tmp_path / "k" / E.CARD_FILE).read_text())
    card = json.loads((tmp_path / "sm" / E.CARD_FILE).read_text())
    assert card["class_names"] == names
    assert card["model"]["config"] == first["model"]["config"] is not None
    assert card["training"] == first["training"] is not None
    assert E.load_export(tmp_path / "sm").class_names == names


_KILL_SCRIPT = """
import os, signal, sys
from cnnzoo import export as E

def die(folder, batch):
    os.kill(os.getpid(), signal.SIGKILL)  # after the write, before the rename

E._RELOADERS["saved_model"] = die
model, names, card = E.load_source(sys.argv[1])
E.export_saved_model(model, sys.argv[2], overwrite=True, verbose=False)
"""


def test_sigkill_during_export_keeps_old_export(run_dir, model, tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "sm"
    E.export_saved_model(model, path, verbose=False)
    before = _snapshot(path)
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(run_dir), str(path)],
                          capture_output=True, timeout=240,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert _snapshot(path) == before
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".sm.")]
    assert leftovers  # the killed write's temporary sibling, never at the target
    E.export_saved_model(model, path, overwrite=True, verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["kill.py", "sm"]  # and the next export tidies up


_FRESH_LOAD_SCRIPT = """
import sys

import keras
import numpy as np

from cnnzoo import layers
from cnnzoo.export import load_keras_model

batch = np.load(sys.argv[1])
for path in sys.argv[2:]:
    a = load_keras_model(path).predict(batch, verbose=0)
    b = keras.saving.load_model(path, custom_objects=layers.custom_objects(),
                                safe_mode=True).predict(batch, verbose=0)
    print(float(np.max(np.abs(a - b))), path)
    np.save(path + ".out.npy", a)
"""


def test_fresh_process_loads_models_with_cnnzoo_layers(tmp_path):
    # cnnzoo's layers register with Keras on import, and they import lazily:
    # a process that has built no model must still load them.
    import subprocess
    import sys

    import cnnzoo

    models = {
        "primitive": cnnzoo.create_model("simple_cnn", input_shape=(8, 8, 1), num_classes=3,
                                         implementation="primitive"),
        "drop_path": cnnzoo.create_model("resnet18", input_shape=(32, 32, 3), num_classes=3,
                                         drop_path_rate=0.1, dropout_rate=0.2,
                                         tunable_dropout=True),
    }
    found = {type(layer).__name__ for m in models.values() for layer in m.layers
             if type(layer).__module__.startswith("cnnzoo.")}
    assert found == {"ReLU", "Dropout", "VariableDropout", "DropPath", "MaxPoolPadding2D"}
    paths = []
    for name, m in models.items():
        path = tmp_path / f"{name}.keras"
        m.save(path)
        paths.append(str(path))
    rng = np.random.default_rng(0)
    batches = {"primitive": rng.random((2, 8, 8, 1), "float32"),
               "drop_path": rng.random((2, 32, 32, 3), "float32")}
    for name, path in zip(models, paths):
        np.save(tmp_path / f"{name}.npy", batches[name])
        script = tmp_path / "load.py"
        script.write_text(_FRESH_LOAD_SCRIPT)
        proc = subprocess.run([sys.executable, str(script), str(tmp_path / f"{name}.npy"), path],
                              capture_output=True, text=True, timeout=240, check=False,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert float(proc.stdout.split()[0]) == 0.0
        np.testing.assert_allclose(np.load(path + ".out.npy"),
                                   models[name].predict(batches[name], verbose=0),
                                   rtol=1e-5, atol=1e-6)
