"""Name -> layer factories for hidden activations and dropout.

Every zoo model gets its activation and dropout layers from here, so one
`implementation` switch ("keras" or "primitive") swaps every ReLU and
Dropout of any model without touching the model files. Importing this module
does not import Keras.
"""

import importlib
import inspect

from cnnzoo import _validation as v
from cnnzoo._lazy import keras

# Activations of the ReLU family are built from the implementation's ReLU
# layer, so `implementation="primitive"` covers them too. The leaky slope is
# `keras.activations.leaky_relu`'s default.
RELU_FAMILY = {
    "relu": {},
    "relu6": {"max_value": 6.0},
    "leaky_relu": {"negative_slope": 0.2},
}
# Other names go through `keras.layers.Activation`.
OTHER_ACTIVATIONS = (
    "elu", "selu", "gelu", "silu", "swish", "sigmoid", "hard_sigmoid", "hard_silu",
    "tanh", "softplus", "softsign", "mish", "linear", "exponential",
)
ACTIVATIONS = tuple(RELU_FAMILY) + OTHER_ACTIVATIONS

# implementation -> (module, names of its ReLU, Dropout, SpatialDropout2D classes).
_IMPLEMENTATIONS = {
    "keras": ("keras.layers", ("ReLU", "Dropout", "SpatialDropout2D")),
    "primitive": ("cnnzoo.layers", ("ReLU", "Dropout", "SpatialDropout2D")),
}


def implementations():
    """The names accepted by `implementation=`."""
    return tuple(_IMPLEMENTATIONS)


def layer_classes(implementation):
    """Returns `(ReLU, Dropout, SpatialDropout2D)` of an implementation."""
    v.check_choice("implementation", implementation, implementations())
    module_name, names = _IMPLEMENTATIONS[implementation]
    module = importlib.import_module(module_name)
    return tuple(getattr(module, n) for n in names)


def check_activation(name, value, allow_none=False):
    """Checks an activation: a known name, a callable or a layer class."""
    if value is None and allow_none:
        return value
    if isinstance(value, str):
        return v.check_choice(name, value, ACTIVATIONS + (("softmax",) if allow_none else ()))
    if callable(value):
        return value
    v.fail(f"Expected `{name}` to be an activation name (one of {list(ACTIVATIONS)}), "
           f"a callable or a layer class.", name, value)


def make_activation(activation, *, implementation="keras", name=None):
    """Builds the activation layer for `activation`.

    Args:
        activation: a name from `ACTIVATIONS`, a callable, a layer class
            (instantiated with `name=` only), or a layer instance (a fresh
            copy from its config each call).
        implementation: `"keras"` or `"primitive"`: which ReLU the ReLU
            family uses.
        name: the layer's name.
    """
    check_activation("activation", activation)
    if isinstance(activation, str):
        if activation in RELU_FAMILY:
            relu_cls = layer_classes(implementation)[0]
            return relu_cls(name=name, **RELU_FAMILY[activation])
        return keras.layers.Activation(activation, name=name)
    if inspect.isclass(activation):
        return activation(name=name)
    if isinstance(activation, keras.layers.Layer):
        # A copy per call: one instance at every site would be one layer,
        # one set of weights (a PReLU's), and one input shape, for all.
        return type(activation).from_config({**activation.get_config(), "name": name})
    return keras.layers.Activation(activation, name=name)


def make_dropout(rate, *, dropout_type="standard", implementation="keras", name=None,
                 seed=None, variable=False):
    """Builds a dropout layer, or returns `None` when `rate == 0`.

    Args:
        rate: fraction of units (or feature maps) dropped, in [0, 1).
        dropout_type: `"standard"` (elementwise) or `"spatial"` (whole
            feature maps of a 4D tensor).
        implementation: `"keras"` or `"primitive"`.
        name: the layer's name.
        seed: optional int seed.
        variable: build a `cnnzoo.layers.VariableDropout`, whose rate and
            type are variables, even at rate 0 (the implementation does not
            apply: it is built from `keras.ops` either way).
    """
    rate = v.check_rate("rate", rate)
    v.check_choice("dropout_type", dropout_type, ("standard", "spatial"))
    if variable:
        from cnnzoo.layers.variable_dropout import VariableDropout

        return VariableDropout(rate, spatial=dropout_type == "spatial", seed=seed, name=name)
    if rate == 0.0:
        return None
    _, dropout_cls, spatial_cls = layer_classes(implementation)
    cls = spatial_cls if dropout_type == "spatial" else dropout_cls
    return cls(rate, seed=seed, name=name)
