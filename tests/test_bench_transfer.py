"""`cnnzoo bench --only transfer`: both contenders compute the same thing, and the rows come out."""

import numpy as np

import cnnzoo.data
from cnnzoo import transfer
from cnnzoo import train as T
from cnnzoo.bench import transfer as bench


def test_the_plain_backbone_and_cnnzoos_give_the_same_features(tmp_path):
    """The comparison is fair: the same weights file, the same frozen function of each image."""
    import keras

    folder = bench.make_folder(str(tmp_path / "images"), 30, 32)
    ds = cnnzoo.data.load_dataset(folder, seed=0)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 3
    weights = bench.weights_file("mobilenet_v2", 32, str(tmp_path / "m.h5"))
    plain = bench.plain_build("mobilenet_v2", 32, 3, weights)
    import keras_tuner as kt

    model = plain(kt.HyperParameters())
    pooled = keras.Model(model.inputs, model.layers[-3].output)  # GlobalAveragePooling2D's
    ours = transfer.feature_extractor(T.build_model("mobilenet_v2", ds, weights=weights,
                                                    input_size=32))
    a, b = pooled.predict(ds.x_val, verbose=0), ours.predict(ds.x_val, verbose=0)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_a_tiny_transfer_benchmark_reports_both_rows():
    rows = bench.run(images=45, size=32, max_trials=1, epochs=1, repeats=1)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["name"].startswith("trials/hour: mobilenet_v2")
    assert rows[1]["name"].startswith("fine-tuning epoch") and rows[1]["median"] > 0
