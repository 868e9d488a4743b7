"""A subclass of cnnzoo's ReLU or Dropout with a weight of its own, as of Keras's namesakes."""

import keras
import numpy as np
import pytest

from cnnzoo import _compat_keras, layers

pytestmark = pytest.mark.multibackend


def _scaled(base):
    """`base` times a trainable scalar that the subclass creates in its own `build`."""

    class Scaled(base):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

        def call(self, inputs, **kwargs):
            return super().call(inputs, **kwargs) * self.scale

    return Scaled


@pytest.mark.parametrize("ours,theirs,args", [
    (layers.ReLU, keras.layers.ReLU, ()),
    (layers.Dropout, keras.layers.Dropout, (0.5,)),
    (layers.SpatialDropout2D, keras.layers.SpatialDropout2D, (0.5,)),
])
def test_subclass_build_runs_as_for_keras(ours, theirs, args):
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    # The Keras layer first, the behaviour to match, where Keras has it: before
    # 3.10 its ReLU and Dropout were built in `__init__` whatever the subclass
    # (so its `build` never ran), a flaw cnnzoo's layers do not copy.
    keras_builds_subclasses = _compat_keras.keras_version() >= (3, 10)
    for base in (theirs, ours) if keras_builds_subclasses else (ours,):
        layer = _scaled(base)(*args)
        assert not layer.built
        y = layer(x)
        assert layer.built and [w.name for w in layer.weights] == ["scale"]
        layer.scale.assign(2.0)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)),
                                   2.0 * keras.ops.convert_to_numpy(y), rtol=1e-6)


def test_plain_layers_are_built_when_made():
    # As Keras's: nothing to build, so a fresh layer is ready (and has no weights).
    for layer in (layers.ReLU(), layers.Dropout(0.3), layers.SpatialDropout2D(0.3)):
        assert layer.built and layer.weights == []
