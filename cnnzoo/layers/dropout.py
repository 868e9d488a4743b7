"""Inverted dropout rebuilt from `keras.random.uniform`, a comparison and `where`.

In training each element (or each feature map, for `SpatialDropout2D`) is
kept with probability `1 - rate` and divided by `1 - rate`, so the expected
value of every unit is unchanged; at inference the input comes back
untouched, so nothing needs rescaling when the model is deployed.

The uniform noise is drawn the way each backend's Keras dropout draws it, so
that, for the same seed, the mask is bit for bit Keras's:

- TensorFlow (`tf.nn.experimental.stateless_dropout`): noise in the input's
  dtype, an element is kept where `noise >= rate`.
- JAX (`jax.random.bernoulli`): noise in float32 (float64 with
  `jax_enable_x64`), kept where `noise < 1 - rate`.
- torch (`torch.bernoulli` of a float32 tensor of `1 - rate`, seeded with
  a generator drawn from the seed as `keras.random` draws it): noise in
  float32, kept where `noise < 1 - rate`. (Unseeded, Keras's torch dropout
  calls `torch.nn.functional.dropout` on torch's global generator instead.)
- Other backends: TensorFlow's rule (not compared with Keras).

Kept values are `x / (1 - rate)` in the input's dtype: correctly rounded on
TensorFlow; on JAX, XLA:CPU's vectorized division can be 1 ulp off (Keras's
JAX dropout divides the same way, so the values are Keras's bit for bit).
Keras on TensorFlow multiplies by a rounded `1 / (1 - rate)`, which can differ
from the quotient in the last bit (never for rates such as 0.5 or 0.25).
"""

import keras
import numpy as np
from keras import ops

from cnnzoo import _validation as v
from cnnzoo.layers._stateless import build_at_init


def _check_noise_shape(noise_shape):
    if noise_shape is None:
        return None
    if isinstance(noise_shape, (str, bytes)) or not hasattr(noise_shape, "__iter__"):
        v.fail("Expected `noise_shape` to be a tuple of positive integers or None.",
               "noise_shape", noise_shape)
    dims = tuple(noise_shape)
    for dim in dims:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            v.fail("Expected `noise_shape` to be a tuple of positive integers or None.",
                   "noise_shape", noise_shape)
    return dims


def _jax_float():
    """JAX's dtype for a Python float: float64 with `jax_enable_x64`, else float32.

    `jax.random.bernoulli(key, p=1 - rate)` draws its noise in it. (Read
    through `keras.ops`: a float64 array stays float64 only with x64 on.)
    """
    return keras.backend.standardize_dtype(ops.convert_to_tensor(np.float64(0.5)).dtype)


def keep_mask(shape, rate, dtype, seed):
    """A boolean tensor of `shape`, True with probability `1 - rate`.

    Args:
        shape: the noise shape (ints or scalar tensors).
        rate: the drop probability, in (0, 1).
        dtype: the input's dtype (TensorFlow draws its noise in it).
        seed: an int or a `keras.random.SeedGenerator`.
    """
    backend = keras.backend.backend()
    if backend in ("jax", "torch"):
        noise_dtype = _jax_float() if backend == "jax" else "float32"
        noise = keras.random.uniform(shape, dtype=noise_dtype, seed=seed)
        return ops.less(noise, 1.0 - rate)
    noise = keras.random.uniform(shape, dtype=dtype, seed=seed)
    # convert_to_tensor with a dtype rounds the Python float once, as
    # TensorFlow's dropout does (`ops.cast` would round it to float32 first).
    return ops.greater_equal(noise, ops.convert_to_tensor(rate, dtype=dtype))


def check_float_input(inputs):
    """Refuses integer inputs, as Keras's dropout does: 1 - rate would round to an integer."""
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if not keras.backend.is_float_dtype(dtype):
        v.fail("Expected a floating-point input to dropout, whose kept values are divided "
               "by 1 - rate.", "inputs.dtype", dtype)


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Inverted dropout of a tensor (always on: this is the training branch).

    Args:
        inputs: a floating-point tensor.
        rate: the drop probability, in [0, 1].
        noise_shape: the mask's shape, broadcast against the input; `None`
            entries take the input's size.
        seed: an int or a `keras.random.SeedGenerator`.

    Returns:
        `where(mask, inputs / (1 - rate), 0)`.
    """
    check_float_input(inputs)
    if rate == 1.0:
        # Everything is dropped; 1 / (1 - rate) would be infinite.
        return ops.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    input_shape = ops.shape(inputs)
    if noise_shape is None:
        shape = input_shape
    else:
        shape = tuple(input_shape[i] if d is None else d for i, d in enumerate(noise_shape))
    keep = keep_mask(shape, rate, inputs.dtype, seed)
    scaled = ops.divide(inputs, ops.convert_to_tensor(1.0 - rate, dtype=inputs.dtype))
    return ops.where(keep, scaled, ops.zeros_like(inputs))


@keras.saving.register_keras_serializable(package="cnnzoo")
class Dropout(keras.layers.Layer):
    """Inverted dropout, built from `keras.random.uniform` and `where`.

    The same signature and semantics as `keras.layers.Dropout`. In training,
    each unit is set to 0 with probability `rate` and the others are divided
    by `1 - rate`, so the sum over all units is unchanged in expectation. At
    inference (`training=False`, the default) the input is returned as is.
    For the same seed the mask is bit for bit Keras's on TensorFlow, JAX and
    torch (see the module's docstring).

    Args:
        rate: float in [0, 1], the fraction of the units to drop.
        noise_shape: optional tuple of ints (or `None` entries, which take
            the input's size): the shape of the mask, broadcast against the
            input. `(batch, 1, features)` drops whole features of every
            timestep together. Defaults to `None` (the input's shape).
        seed: optional int seed. Defaults to `None`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a floating-point tensor of any rank.
        training: whether to drop. Defaults to `False`.

    Input shape:
        Any.

    Output shape:
        The input's.

    Example:

    >>> layer = cnnzoo.layers.Dropout(0.5, seed=1)
    >>> layer(np.ones((2, 4)), training=True)  # each unit 0 or 2.0, as Keras's (same seed)
    >>> layer(np.ones((2, 4)))  # inference: the input unchanged

    Reference:
        - [Srivastava et al., 2014](https://jmlr.org/papers/v15/srivastava14a.html)
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = v.check_number("rate", rate, low=0.0, high=1.0)
        self.seed = v.check_int("seed", seed, allow_none=True)
        self.noise_shape = _check_noise_shape(noise_shape)
        if self.rate > 0:
            # Created once, here, as Keras does: the layer's draws advance it.
            self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        build_at_init(self)

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return dropout(inputs, self.rate, noise_shape=self._noise_shape(inputs),
                           seed=self.seed_generator)
        return inputs

    def _noise_shape(self, inputs):
        return self.noise_shape

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": self.noise_shape}


@keras.saving.register_keras_serializable(package="cnnzoo")
class SpatialDropout2D(Dropout):
    """Drops whole feature maps of a 4D tensor (inverted dropout).

    The same signature and semantics as `keras.layers.SpatialDropout2D`: one
    keep-or-drop decision per sample and channel, shared by every pixel of
    that feature map. Where neighbouring pixels are strongly correlated, as
    in early convolution layers, elementwise dropout barely regularizes;
    dropping whole maps does.

    Args:
        rate: float in [0, 1], the fraction of feature maps to drop.
        data_format: `"channels_last"` (`(batch, rows, cols, channels)`) or
            `"channels_first"`. Defaults to `keras.config.image_data_format()`.
        seed: optional int seed. Defaults to `None`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4D floating-point tensor.
        training: whether to drop. Defaults to `False`.

    Input shape:
        4D: `(samples, rows, cols, channels)` with `"channels_last"`.

    Output shape:
        The input's.

    Reference:
        - [Tompson et al., 2014](https://arxiv.org/abs/1411.4280)
    """

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        if "noise_shape" in kwargs:  # Keras's takes none either: the mask is per map
            v.fail("Expected no `noise_shape` for SpatialDropout2D: its mask is one value per "
                   "sample and feature map.", "noise_shape", kwargs["noise_shape"])
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = v.check_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _noise_shape(self, inputs):
        shape = ops.shape(inputs)
        if self.data_format == "channels_first":
            return (shape[0], shape[1], 1, 1)
        return (shape[0], 1, 1, shape[3])

    def get_config(self):
        config = super().get_config()
        config.pop("noise_shape")
        return {**config, "data_format": self.data_format}
