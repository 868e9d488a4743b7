import numpy as np
import pytest

from cnnzoo import pipeline


@pytest.mark.multibackend
def test_classifier_takes_raw_images_and_resizes_to_the_model_minimum():
    # 3x3 images are below simple_cnn's minimum (4): the pipeline resizes up.
    model = pipeline.build_classifier("simple_cnn", (3, 3, 1), 4)
    assert model.input_shape == (None, 3, 3, 1)
    assert model.get_layer("resize") is not None
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)
    assert model.output_names == ["probabilities"]
    probs = np.asarray(model.predict(np.full((2, 3, 3, 1), 255.0, "float32"), verbose=0))
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.multibackend
def test_rescale_happens_inside_the_model():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 1)).astype("float32")
    model = pipeline.build_classifier("simple_cnn", (8, 8, 1), 3, dropout_rate=0.0)
    body = model.get_layer("simple_cnn")
    np.testing.assert_allclose(model.predict(x, verbose=0), body.predict(x / 255.0, verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [0, (8,), (8, 8, 8), 2.5, True, 3, (8, 3)])
def test_bad_input_size(size):
    with pytest.raises(ValueError, match="Received: input_size="):
        pipeline.build_classifier("simple_cnn", (8, 8, 1), 3, input_size=size)
