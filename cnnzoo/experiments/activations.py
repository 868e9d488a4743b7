"""ReLU, sigmoid and tanh and their derivatives, side by side.

The derivatives are computed by autodiff of the activations (ReLU is
cnnzoo's primitive layer), not written by hand, so the plot shows what
backpropagation actually multiplies by, including ReLU's 0 at x = 0.
"""

import numpy as np

from cnnzoo.experiments import _common

NAME = "activations"


def add_arguments(parser):
    parser.add_argument("--range", dest="x_max", type=float, default=6.0,
                        help="Plot x in [-RANGE, RANGE]. Default: 6.")
    parser.add_argument("--points", type=int, default=1201, help="Default: 1201.")


def _functions():
    import keras

    from cnnzoo.layers import ReLU

    relu = ReLU()
    return {
        "relu": relu,
        "sigmoid": keras.activations.sigmoid,
        "tanh": keras.activations.tanh,
    }


def run(out, *, x_max=6.0, points=1201, log=print):
    """Plots the activations and their derivatives; writes the report.

    Args:
        out: the output folder.
        x_max: plot on `[-x_max, x_max]`.
        points: number of points (odd, so that x = 0 is one of them).
    """
    from keras import ops

    from cnnzoo import _validation as v
    from cnnzoo.verify import grad_of_sum

    out = _common.check_out(out)
    # float32 holds x and f(x); far beyond 1e4 every curve is flat anyway.
    x_max = v.check_number("x_max", x_max, low=0.0, low_inclusive=False, high=1e4)
    points = v.check_int("points", points, low=3)
    if points % 2 == 0:
        points += 1
    x = np.linspace(-x_max, x_max, points).astype("float32")
    x[points // 2] = 0.0  # exactly the kink
    results = {}
    for name, fn in _functions().items():
        y = np.asarray(ops.convert_to_numpy(fn(ops.convert_to_tensor(x))))
        dy = grad_of_sum(fn, x)
        at_4 = grad_of_sum(fn, np.array([4.0, -4.0], "float32"))
        far = np.abs(x) >= 4.0
        results[name] = {
            "value": y,
            "derivative": dy,
            "range": [float(y.min()), float(y.max())],
            "max_derivative": float(dy.max()),
            "derivative_at_0": float(dy[points // 2]),
            # At x = +-4 themselves, whatever the plotted range.
            "derivative_at_4": float(at_4[0]),
            "derivative_at_minus_4": float(at_4[1]),
            # Where a unit passes back less than 1% of the gradient.
            "fraction_below_0.01": float(np.mean(dy < 0.01)),
            "mean_derivative_beyond_4": float(dy[far].mean()) if far.any() else None,
            "nonnegative_outputs": bool((y >= 0).all()),
        }

    fig, axes = _common.figure(ncols=2)
    for name, r in results.items():
        axes[0, 0].plot(x, r["value"], label=name)
        axes[0, 1].plot(x, r["derivative"], label=name)
    axes[0, 0].set_title("activation f(x)")
    axes[0, 1].set_title("derivative f'(x) (autodiff)")
    for ax in axes[0]:
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("x")
        ax.legend()
    axes[0, 0].set_ylim(-1.5, max(min(x_max, 3.0), 1.05))  # the sigmoid's top in view

    rows = [(name, f"[{r['range'][0]:.3g}, {r['range'][1]:.3g}]", f"{r['max_derivative']:.3g}",
             f"{r['derivative_at_0']:.3g}", f"{r['derivative_at_4']:.3g}",
             f"{r['derivative_at_minus_4']:.3g}", f"{r['fraction_below_0.01']:.2f}")
            for name, r in results.items()]
    relu, sig, tanh = results["relu"], results["sigmoid"], results["tanh"]
    depth_10 = {name: r["max_derivative"] ** 10 for name, r in results.items()}
    markdown = f"""# Activations: ReLU, sigmoid and tanh

On x in [-{x_max:g}, {x_max:g}] ({points} points); derivatives by autodiff (ReLU is
`cnnzoo.layers.ReLU`).

{_common.md_table(["activation", "output range", "max f'", "f'(0)", "f'(4)", "f'(-4)",
                   "share of x with f' < 0.01"], rows)}

What the numbers say:

- The sigmoid's derivative is at most {sig['max_derivative']:.3g} (at 0): a chain of 10
  sigmoid layers multiplies the gradient by at most {depth_10['sigmoid']:.2g} from the
  activations alone. tanh's is at most {tanh['max_derivative']:.3g}, but both saturate: at |x| = 4 the
  derivatives are {sig['derivative_at_4']:.3g} (sigmoid) and {tanh['derivative_at_4']:.3g} (tanh).
- ReLU's derivative is exactly 1 for every x > 0, however large, and 0 for x <= 0
  (including x = 0: f'(0) = {relu['derivative_at_0']:g}, Keras's convention). It does not
  saturate above 0, but it passes back nothing for
  {relu['fraction_below_0.01'] * 100:.0f}% of this symmetric range: the whole negative half.
  "No vanishing gradient" holds for active units only; a unit whose input stays
  negative gets no gradient at all (a "dead" ReLU).
- Non-negative outputs (the tutorial's argument for ReLU in CNNs):
  {", ".join(f"{name} {'yes' if r['nonnegative_outputs'] else 'no'}" for name, r in results.items())}.
"""
    data = {
        "experiment": NAME,
        "x_max": x_max,
        "points": points,
        "activations": {name: {k: val for k, val in r.items()
                               if k not in ("value", "derivative")}
                        for name, r in results.items()},
        "curves": {"x": x[:: max(1, points // 200)].tolist(),
                   **{name: {"value": r["value"][:: max(1, points // 200)].tolist(),
                             "derivative": r["derivative"][:: max(1, points // 200)].tolist()}
                      for name, r in results.items()}},
    }
    files = _common.save(out, NAME, markdown, data, {"curves": fig}, log=log)
    return {**data, "files": files}
