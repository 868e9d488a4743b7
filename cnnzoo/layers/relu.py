"""ReLU rebuilt from comparisons and `where`.

`keras.layers.ReLU` calls backend kernels (`tf.nn.relu`, `jax.nn.relu`,
`relu6`, `leaky_relu`, `clip`). This layer computes the same function with
elementwise `keras.ops` only (`greater`, `less_equal`, `equal`, `where`,
`multiply`, `subtract`, `stop_gradient`), so that what ReLU does, and what its
gradient is at each kink, is written out here in a few lines.

Why `where` and not `maximum(x, 0)`: autodiff of `maximum` splits the
gradient at a tie (TensorFlow gives 1 at x = 0, JAX gives 0.5), while Keras's
ReLU has gradient 0 at x = 0 on every backend. A `where` selects one branch,
so its gradient is exactly the selected branch's.

Keras's gradient conventions at the kinks, measured on Keras 3.15 with
TensorFlow 2.21, JAX 0.10 and PyTorch 2.13 (CPU), and matched here
(`cnnzoo.verify` checks each):

| configuration                         | at                | TensorFlow | JAX | torch |
|---------------------------------------|-------------------|------------|-----|-------|
| default                               | x = 0             | 0          | 0   | 0     |
| `negative_slope` only (leaky)         | x = 0             | slope      | 1   | slope |
| `threshold` t > 0                     | x = t             | 0          | 0   | 0     |
| `max_value=6`, no threshold (relu6)   | x = 0 and x = 6   | 0          | 0   | 0     |
| any other `max_value` m               | x = m             | 1          | 0.5 | 1     |
| `negative_slope`, not the leaky path  | x = t (or 0)      | 0          | 0   | 0     |

The gradient at NaN is 0 (the slope on the leaky path), as `tf.nn.relu`'s
and `jax.nn.relu`'s; at +-inf it is Keras's too. PyTorch's ReLU kernel
passes the gradient at NaN (`torch.relu`'s backward zeroes only `x <= 0`),
so on torch the default ReLU's gradient at NaN is 1 and the negative part's
`relu(-x + t)` adds the slope there; `torch.clip` (any `max_value`, and
relu6) zeroes it. (`torch.nn.functional.relu6`'s backward is 0 at NaN in
its vectorized loop and 1 in the scalar loop that ends a tensor whose size
is not a multiple of the vector width: the vectorized 0 is matched.) One
more detail copied from the kernels: on TensorFlow the leaky path multiplies
by `float32(slope)` (`tf.nn.leaky_relu` takes a float32 attribute), which
matters in float64. Other backends get TensorFlow's conventions (not
measured).
"""

import struct

import keras
from keras import ops

from cnnzoo import _validation as v
from cnnzoo.layers._stateless import build_at_init


def _leaky_grad_at_zero_is_one():
    # jax.nn.leaky_relu is where(x >= 0, x, slope * x); tf.nn.leaky_relu's
    # kernel is x > 0 ? x : slope * x.
    return keras.backend.backend() == "jax"


def _leaky_slope(negative_slope):
    # tf.nn.leaky_relu takes its slope as a float32 attribute, so in float64
    # TensorFlow multiplies by float32(slope); JAX and torch use the Python float.
    if keras.backend.backend() in ("jax", "torch"):
        return negative_slope
    return struct.unpack("f", struct.pack("f", negative_slope))[0]


def _times_slope(x, negative_slope):
    """x * negative_slope, the slope rounded as the backend's Keras rounds it.

    Keras's ReLU on torch multiplies by the Python float (a double), but
    `keras.ops.multiply` on torch first makes it a float32 tensor: in float64
    the slope goes in as a float64 tensor instead.
    """
    if keras.backend.backend() == "torch" and (
            keras.backend.standardize_dtype(x.dtype) == "float64"):
        negative_slope = ops.convert_to_tensor(negative_slope, dtype="float64")
    return ops.multiply(x, negative_slope)


def _clip_grad_at_max():
    # jnp.clip is min(max(x, lo), hi), whose JVP splits a tie in half;
    # tf.clip_by_value's gradient passes through at the bounds.
    return 0.5 if keras.backend.backend() == "jax" else 1.0


def _nan_grad_is_one():
    # torch.relu's backward zeroes the gradient where x <= 0 only, and clamp's
    # (torch.clip, relu6) where x is outside [min, max], NaN included.
    return keras.backend.backend() == "torch"


def _relu_core(x):
    """max(x, 0) with gradient 1 for x > 0 and 0 for x <= 0.

    NaN propagates (as `tf.nn.relu`, `jax.nn.relu` and `torch.relu` do): NaN
    is neither `> 0` nor `<= 0`. Its gradient is the backend's: 1 on torch
    (the `x` of `where(x <= 0, 0, x)`), else 0 (the inner branch below, whose
    gradient is stopped).
    """
    zero = ops.zeros_like(x)
    if _nan_grad_is_one():
        return ops.where(ops.less_equal(x, 0), zero, x)
    not_positive = ops.where(ops.less_equal(x, 0), zero, ops.stop_gradient(x))
    return ops.where(ops.greater(x, 0), x, not_positive)


def _clip_above(p, max_value, grad_at_max):
    """min(p, max_value), with gradient `grad_at_max` where p == max_value.

    `p - (p - stop_gradient(p)) * (1 - c)` is exactly `p` forward where p is
    finite, and has gradient c. Where p is infinite (a `max_value` of +inf in
    the compute dtype, as 1e5 is in float16) it would be inf - inf = NaN:
    there the tie is p itself, as it is for integer inputs. Where torch's
    relu passed a gradient at NaN, `torch.clip` stops it.
    """
    m = ops.cast(max_value, p.dtype)
    if grad_at_max == 1.0 or not keras.backend.is_float_dtype(
            keras.backend.standardize_dtype(p.dtype)):
        tie = p  # integers have no gradient; the float factor would promote them
    else:
        # p - d (1 - c), not p + d (c - 1): Keras's TensorFlow `add` takes two
        # tensors shaped like (0, 5) for an input and a bias, and fails.
        tie = ops.subtract(p, ops.multiply(ops.subtract(p, ops.stop_gradient(p)),
                                           1.0 - grad_at_max))
        tie = ops.where(ops.isfinite(p), tie, p)
    below = p
    if _nan_grad_is_one() and keras.backend.is_float_dtype(
            keras.backend.standardize_dtype(p.dtype)):
        below = ops.where(ops.isnan(p), ops.stop_gradient(p), p)
    return ops.where(ops.greater(p, m), m, ops.where(ops.equal(p, m), tie, below))


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """The function of `cnnzoo.layers.ReLU`, on a tensor.

    Mirrors the order of operations of `keras.activations.relu`, so that the
    results are bit for bit Keras's:

    - `x > threshold`: `x` (clipped at `max_value`);
    - otherwise `-negative_slope * (threshold - x)`, or `negative_slope * x`
      on the leaky path (`threshold == 0` and no `max_value`).

    Args:
        x: a floating-point tensor.
        negative_slope: slope below the threshold.
        max_value: saturation value, or `None`.
        threshold: values at or below it are damped.

    Returns:
        A tensor of the shape and dtype of `x`.
    """
    if negative_slope != 0.0 and max_value is None and threshold == 0.0:
        # The leaky path: one select, its branch at 0 chosen per backend.
        negative_slope = _leaky_slope(negative_slope)
        if _leaky_grad_at_zero_is_one():
            return ops.where(ops.greater_equal(x, 0), x, _times_slope(x, negative_slope))
        return ops.where(ops.greater(x, 0), x, _times_slope(x, negative_slope))

    clip_max = max_value is not None
    grad_at_max = _clip_grad_at_max()
    if threshold != 0.0:
        t = ops.cast(threshold, x.dtype)
        positive = ops.where(ops.greater(x, t), x, ops.zeros_like(x))
    else:
        positive = _relu_core(x)
        if max_value == 6:
            # Keras uses the relu6 kernel here, whose gradient is 0 at 6 on
            # every backend.
            grad_at_max = 0.0
    if clip_max:
        positive = _clip_above(positive, max_value, grad_at_max)

    if negative_slope != 0.0:
        # `-x + threshold`, as Keras writes it (the same bits as
        # `threshold - x`).
        negative = _relu_core(ops.add(ops.negative(x), threshold) if threshold != 0.0
                              else ops.negative(x))
        positive = ops.subtract(positive, _times_slope(negative, negative_slope))
    return positive


@keras.saving.register_keras_serializable(package="cnnzoo")
class ReLU(keras.layers.Layer):
    """Rectified Linear Unit, built from comparisons and `where`.

    The same signature and results as `keras.layers.ReLU`:

    ```
    f(x) = max_value                          if x >= max_value
    f(x) = x                                  if threshold < x < max_value
    f(x) = negative_slope * (x - threshold)   otherwise
    ```

    Its gradient is 1 above the kink and 0 below it (the slope with
    `negative_slope`); at the kinks it follows Keras's convention on each
    backend (0 at x = 0 for the default ReLU; see the module's table).
    Forward results equal Keras's bit for bit, up to the sign of zero and the
    flushing of subnormals, which TensorFlow's own ReLU kernel does
    differently from one vector lane to the next.

    Args:
        max_value: float >= 0, the maximum activation, or `None` for no
            limit. Defaults to `None`.
        negative_slope: float >= 0, the slope below the threshold.
            Defaults to `0.0`.
        threshold: float >= 0, the value at and below which units are
            damped. Defaults to `0.0`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a floating-point tensor of any shape.

    Input shape:
        Any.

    Output shape:
        The input's.

    Example:

    >>> layer = cnnzoo.layers.ReLU(max_value=10, negative_slope=0.5)
    >>> layer(np.array([-10.0, -5.0, 0.0, 5.0, 10.0]))
    [-5. , -2.5,  0. ,  5. , 10. ]

    Reference:
        - [Nair and Hinton, 2010](https://www.cs.toronto.edu/~hinton/absps/reluICML.pdf)
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = v.check_number("max_value", max_value, low=0.0, allow_none=True,
                                         allow_inf=True)  # as Keras's: no limit
        self.negative_slope = v.check_number("negative_slope", negative_slope, low=0.0)
        self.threshold = v.check_number("threshold", threshold, low=0.0)
        self.supports_masking = True
        build_at_init(self)

    def call(self, inputs):
        return relu(inputs, negative_slope=self.negative_slope, max_value=self.max_value,
                    threshold=self.threshold)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }
