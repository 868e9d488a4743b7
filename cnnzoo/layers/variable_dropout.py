"""Dropout whose rate (and kind) live in variables: one compiled graph serves every rate.

A `keras.layers.Dropout(0.3)` bakes 0.3 into the traced training step, so a
search that tries ten rates traces (and, under XLA, compiles) ten training
steps. `VariableDropout` reads its rate from a non-trainable variable when it
runs, and, on 4D inputs, whether it drops single elements or whole feature
maps from a second one. Assigning new values to these variables changes what
the next training step does, without tracing anything again: that is what
lets a dropout search reuse one compiled model for every trial
(`tuning.reuse`).

An element is kept where a float32 uniform draw is `>= rate` (TensorFlow's
rule, on every backend) and the input is multiplied by the mask scaled by
`1 / (1 - rate)`: kept values are scaled, dropped ones multiplied by 0 (one
multiply forward and one in the gradient; an infinite input at a dropped
unit gives NaN, where `Dropout` gives 0).

Drawing the noise is most of a dropout layer's cost on a CPU, so the layer
draws only what its current values need, with `keras.ops.cond` (a plain
Python branch when it runs eagerly): nothing at rate 0 (the output is then
the input, bit for bit), one value per feature map in the spatial kind, one
per element otherwise. The seed is taken from the layer's `SeedGenerator`
before the branches, once per call, so the random stream advances the same
way whatever the values, and no branch changes state (which JAX would not
allow). At inference the output is always the input.
"""

import keras
from keras import ops

from cnnzoo import _compat_keras
from cnnzoo import _validation as v
from cnnzoo.layers.dropout import check_float_input


def _cond(pred, true_fn, false_fn):
    """`keras.ops.cond`, or a plain Python branch where `pred` is known now.

    Eager JAX would compile a `lax.cond` afresh on every call (its branches
    are new closures each time); TensorFlow graphs and JAX traces, whose
    `pred` has no value yet, get the real `cond`.
    """
    try:
        known = bool(ops.convert_to_numpy(pred))
    except (TypeError, RuntimeError):  # a traced value (JAX tracer, TF graph tensor)
        return ops.cond(pred, true_fn, false_fn)
    return true_fn() if known else false_fn()


@keras.saving.register_keras_serializable(package="cnnzoo")
class VariableDropout(keras.layers.Layer):
    """Inverted dropout whose rate and kind are variables that can change after tracing.

    Args:
        rate: float in [0, 1), the initial fraction of units to drop.
        spatial: the initial kind on 4D inputs: `False` drops elements,
            `True` drops whole feature maps (as `SpatialDropout2D`).
            Ignored for inputs of other ranks.
        data_format: `"channels_last"` or `"channels_first"`, for the
            spatial kind. Defaults to `keras.config.image_data_format()`.
        seed: optional int seed. Defaults to `None`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a floating-point tensor of any rank.
        training: whether to drop. Defaults to `False`.

    Example:

    >>> layer = VariableDropout(0.0, seed=1)
    >>> step = ...  # a training step traced once
    >>> layer.rate = 0.5  # the next call of the same traced step drops half
    """

    def __init__(self, rate=0.0, spatial=False, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.initial_rate = v.check_rate("rate", rate)
        self.initial_spatial = v.check_bool("spatial", spatial)
        self.data_format = v.check_data_format(data_format)
        self.seed = v.check_int("seed", seed, allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self._rate = None
        self._spatial = None

    def build(self, input_shape):
        # float32 and never cast to the compute dtype: a bfloat16 rate would
        # be 0.30078125, not 0.3.
        self._rate = self.add_weight(
            shape=(), dtype="float32", trainable=False, autocast=False, name="rate",
            initializer=keras.initializers.Constant(self.initial_rate))
        if len(input_shape) == 4:
            self._spatial = self.add_weight(
                shape=(), dtype="float32", trainable=False, autocast=False, name="spatial",
                initializer=keras.initializers.Constant(float(self.initial_spatial)))

    @property
    def rate(self):
        """The current rate (a Python float); assigning it updates the variable."""
        if self._rate is None:
            return self.initial_rate
        # float32 holds a rate to about 7 digits: 0.3 is stored as 0.30000001.
        return round(float(ops.convert_to_numpy(self._rate)), 7)

    @rate.setter
    def rate(self, value):
        value = v.check_rate("rate", value)
        if self._rate is None:
            self.initial_rate = value
        else:
            self._rate.assign(value)

    @property
    def spatial(self):
        """Whether 4D inputs lose whole feature maps; assigning it updates the variable."""
        if self._spatial is None:
            return self.initial_spatial
        return bool(ops.convert_to_numpy(self._spatial) > 0.5)

    @spatial.setter
    def spatial(self, value):
        value = v.check_bool("spatial", value)
        if self._spatial is not None:
            self._spatial.assign(float(value))
        elif self._rate is not None and value:
            # Built on an input that is not 4D: it has no feature maps to drop.
            v.fail("Expected spatial=False for a layer built on an input that is not 4D "
                   "(no feature maps to drop whole).", "spatial", value)
        else:
            self.initial_spatial = value

    def call(self, inputs, training=False):
        if not training:
            return inputs
        check_float_input(inputs)
        seed = _compat_keras.DrawnSeed(self.seed_generator.next())
        rate = ops.convert_to_tensor(self._rate)
        shape = ops.shape(inputs)

        def drop(noise_shape):
            noise = keras.random.uniform(noise_shape, dtype="float32", seed=seed)
            # kept / (1 - rate), dropped 0: one multiply, in the forward pass
            # and in the gradient. The floor guards the division (rates are below 1).
            scale = 1.0 / ops.maximum(1.0 - rate, 1e-7)
            mask = ops.cast(ops.greater_equal(noise, rate), "float32") * scale
            # A per-map mask broadcasts over each map's pixels.
            return ops.multiply(inputs, ops.cast(mask, inputs.dtype))

        def dropped():
            if self._spatial is None:
                return drop(shape)
            if self.data_format == "channels_first":
                maps = (shape[0], shape[1], 1, 1)
            else:
                maps = (shape[0], 1, 1, shape[3])
            return _cond(ops.greater(self._spatial, 0.5), lambda: drop(maps),
                         lambda: drop(shape))

        return _cond(ops.greater(rate, 0.0), dropped, lambda: inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "spatial": self.spatial,
                "data_format": self.data_format, "seed": self.seed}

