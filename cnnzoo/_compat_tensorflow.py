"""Every TensorFlow internal cnnzoo relies on, behind one door.

TensorFlow registers the gradient of each
`tf.custom_gradient` function traced into a graph in its gradient registry
under a fresh `CustomGradient-<n>` name, and never removes it; Keras's
layers trace such functions in every model's training step, so a long
search would keep every trial's graphs alive through them
(`tuning.memory`). There is no public way to reach that registry:
`gradient_registry()` does, and its contract (`CONTRACTS`, checked by
`tests/test_compat.py`) fails naming the internal and the installed
TensorFlow version when a release keeps it elsewhere.
"""

from cnnzoo._compat import changed

# The names `tf.custom_gradient` registers its gradients under.
CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def _changed(what):
    return changed("TensorFlow", "tensorflow", what, "2.21.0", "cnnzoo/_compat_tensorflow.py")


def gradient_registry(strict=False):
    """TensorFlow's gradient registry, a dict by name.

    Where a TensorFlow release keeps it elsewhere: `None` (the caller does
    without), or with `strict=True` a `LibraryChangedError`.
    """
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        if strict:
            raise _changed("gradient registry (tensorflow.python.framework.ops."
                           "_gradient_registry._registry)") from None
        return None
    return registry


def custom_gradient_names():
    """The names `tf.custom_gradient` functions are registered under so far.

    Empty where the registry cannot be reached (see `gradient_registry`).
    """
    registry = gradient_registry()
    if registry is None:
        return frozenset()
    return frozenset(name for name in registry if name.startswith(CUSTOM_GRADIENT_PREFIX))


def forget_gradients(names):
    """Removes the gradients registered under `names` (those no graph uses any more)."""
    registry = gradient_registry()
    for name in names if registry is not None else ():
        registry.pop(name, None)


def _gradient_registry_contract():
    import tensorflow as tf

    gradient_registry(strict=True)

    @tf.custom_gradient
    def double(x):
        return 2.0 * x, lambda upstream: 2.0 * upstream

    before = custom_gradient_names()
    tf.function(double).get_concrete_function(tf.TensorSpec((), tf.float32))
    added = custom_gradient_names() - before
    if not added:
        raise _changed(f"gradient registry, where a traced tf.custom_gradient registers "
                       f"its gradient as {CUSTOM_GRADIENT_PREFIX}<n>")
    forget_gradients(added)
    if custom_gradient_names() & added:
        raise _changed("gradient registry, from which a name is removed with pop()")


# Internal -> a check that raises `LibraryChangedError` when it is not as expected.
CONTRACTS = {"gradient_registry": _gradient_registry_contract}
