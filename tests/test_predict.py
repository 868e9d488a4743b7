"""cnnzoo predict: end to end on digits, equal to the Keras model's predictions."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from cnnzoo import cli
from cnnzoo import data
from cnnzoo import predict as P
from cnnzoo import train as T


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 2-epoch digits run, its SavedModel, and 12 test digits saved as PNG files."""
    root = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    result = T.train("simple_cnn", "digits", out=root / "run", epochs=2, num_samples=300,
                     batch_size=64, precision="float32", verbose=0)
    keras.config.set_dtype_policy("float32")
    assert cli.main(["export", str(root / "run"), "--out", str(root / "sm")]) == 0
    ds = data.load_dataset("digits", num_samples=300, seed=0)
    folder = root / "images" / "nested"
    folder.mkdir(parents=True)
    for i in range(12):
        pixels = np.round(ds.x_test[i, :, :, 0]).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root, result


def test_cli_predictions_equal_the_models(exported, capsys):
    root, result = exported
    folder = root / "images"
    code = cli.main(["predict", str(root / "sm"), str(folder), "--json", "--top-k", "3"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    files = sorted(str(p) for p in (folder / "nested").glob("*.png"))
    assert [p["image"] for p in out["predictions"]] == files
    # The Keras model on the very same pixels (PNG holds whole numbers).
    x = np.stack([np.asarray(Image.open(f), np.float32)[..., None] for f in files])
    probs = result.model.predict(x, verbose=0)
    labels = [result.class_names[i] for i in probs.argmax(axis=1)]
    assert [p["label"] for p in out["predictions"]] == labels
    for p, row in zip(out["predictions"], probs):
        assert len(p["top"]) == 3
        assert [t["index"] for t in p["top"]] == list(np.argsort(-row, kind="stable")[:3])
        np.testing.assert_allclose([t["probability"] for t in p["top"]],
                                   np.sort(row)[::-1][:3], atol=1e-6)
    # The .keras file of the run gives the same answers, and the plain text lists each image.
    again = P.predict(root / "run" / T.MODEL_FILE, [folder], top_k=1)
    assert [p["label"] for p in again["predictions"]] == labels
    assert cli.main(["predict", str(root / "sm"), files[0], files[1]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(files[0])


def test_other_sizes_and_colors_are_converted(exported, tmp_path):
    root, result = exported
    Image.new("RGB", (16, 12), (200, 10, 10)).save(tmp_path / "big_color.png")
    out = P.predict(root / "sm", [tmp_path / "big_color.png"], top_k=2)
    assert len(out["predictions"]) == 1 and len(out["predictions"][0]["top"]) == 2
    grey = data.read_image(tmp_path / "big_color.png", image_size=8, color_mode="grayscale")
    expected = result.model.predict(grey[None], verbose=0)[0]
    assert out["predictions"][0]["top"][0]["index"] == int(np.argmax(expected))


def test_bad_input(exported, tmp_path, capsys):
    root, _ = exported
    broken = tmp_path / "broken.png"
    Image.new("L", (8, 8), 9).save(broken)
    broken.write_bytes(broken.read_bytes()[:30])
    empty = tmp_path / "empty"
    empty.mkdir()
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    cases = [
        ([str(root / "sm"), str(broken)], "broken.png"),
        ([str(root / "sm"), str(tmp_path / "missing.png")], "does not exist"),
        ([str(root / "sm"), str(empty)], "has none"),
        ([str(fake), str(root / "images")], "fake.keras"),
        ([str(tmp_path / "no_export"), str(root / "images")], "does not exist"),
        ([str(root / "sm"), str(root / "images"), "--top-k", "0"], "top_k"),
    ]
    for argv, message in cases:
        assert cli.main(["predict", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["broken.png", "empty", "fake.keras"]


@pytest.mark.parametrize("images", [[], 5, [None], ""])
def test_bad_image_arguments_are_value_errors(exported, images):
    root, _ = exported
    with pytest.raises(ValueError, match="non-empty list of paths. Received: images="):
        P.predict(root / "sm", images)
