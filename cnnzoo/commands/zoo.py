"""`cnnzoo list`, `cnnzoo info` and `cnnzoo summary`.

`list` and `info` read the registry only: they never import Keras.
"""

import json

from cnnzoo import _validation as v


def add_arguments_for(name, parser):
    if name == "list":
        parser.add_argument("pattern", nargs="?", default=None,
                            help="fnmatch pattern, e.g. 'resnet*'.")
        parser.add_argument("--json", action="store_true", help="Print JSON.")
        parser.add_argument("--pretrained", action="store_true",
                            help="Only the models with published weights, and their sets.")
    elif name == "info":
        parser.add_argument("name", help="Model name (see `cnnzoo list`).")
    else:
        parser.add_argument("name", help="Model name (see `cnnzoo list`).")
        # Values stay strings here and are converted in `model_kwargs`: a bad
        # value is then one line (`cnnzoo summary: error: ... Received: ...`)
        # from the same checks as `create_model`, not argparse's usage dump.
        parser.add_argument("--input-shape", default=None,
                            help="H,W,C (default: the model's).")
        parser.add_argument("--num-classes", default=None)
        parser.add_argument("--activation", default=None)
        parser.add_argument("--dropout-rate", default=None)
        parser.add_argument("--block-dropout-rate", default=None,
                            help="One rate, or one per stage separated by commas.")
        parser.add_argument("--dropout-type", default=None, help="standard or spatial.")
        parser.add_argument("--drop-path-rate", default=None,
                            help="Stochastic depth (residual families).")
        parser.add_argument("--implementation", default=None, help="keras or primitive.")
        parser.add_argument("--weights", default=None,
                            help="Pretrained weights: imagenet, a set name or a file "
                                 "(downloaded into the publisher's cache if missing).")
    parser.set_defaults(_run=name)


def parse_shape(text):
    """`"32,32,3"` or `"32x32x3"` -> `(32, 32, 3)`; a ValueError otherwise."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = None
    if shape is None or len(shape) != 3:
        v.fail("Expected an input shape as H,W,C (e.g. 32,32,3).", "input_shape", text)
    return shape


def parse_rates(text):
    """`"0.2"` -> 0.2; `"0.1,0.2,0.3"` -> a per-stage list."""
    try:
        rates = [float(p) for p in str(text).split(",")]
    except ValueError:
        v.fail("Expected a rate or comma-separated rates.", "block_dropout_rate", text)
    return rates[0] if len(rates) == 1 else rates


def parse_number(name, text, kind=float):
    """`"0.5"` -> 0.5 (`kind=int`: `"10"` -> 10); a ValueError naming `name` otherwise."""
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        v.fail(f"Expected `{name}` to be {noun}.", name, text)


# option -> how its text becomes a `create_model` argument.
_CONVERTERS = {
    "input_shape": parse_shape,
    "num_classes": lambda t: parse_number("num_classes", t, int),
    "activation": str,
    "dropout_rate": lambda t: parse_number("dropout_rate", t),
    "block_dropout_rate": parse_rates,
    "dropout_type": str,
    "drop_path_rate": lambda t: parse_number("drop_path_rate", t),
    "implementation": str,
    "weights": str,
}


def model_kwargs(args):
    """The `create_model` keyword arguments given on the command line."""
    return {k: convert(getattr(args, k)) for k, convert in _CONVERTERS.items()
            if getattr(args, k, None) is not None}


def _format_shape(shape):
    return "x".join(str(d) for d in shape)


def run(args):
    import cnnzoo

    if args._run == "list":
        names = cnnzoo.list_models(args.pattern)
        infos = [cnnzoo.model_info(n) for n in names]
        if args.pretrained:
            infos = [info for info in infos if info["weights"]]
            names = [info["name"] for info in infos]
        if args.json:
            print(json.dumps(infos, indent=2))
            return 0
        last = "weights (the first is 'imagenet')" if args.pretrained else "paper"
        rows = [("name", "family", "parameters", "default input", last)]
        for info in infos:
            rows.append((info["name"], info["family"], f"{info['params']:,}",
                         _format_shape(info["default_input_shape"]),
                         ", ".join(info["weights"]) if args.pretrained
                         else info["paper"].split(",")[0]))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
        print(f"\n{len(names)} models. `cnnzoo info NAME` for details.")
        return 0
    if args._run == "info":
        info = cnnzoo.model_info(args.name)
        sets = info.pop("weights")
        for key, value in info.items():
            if isinstance(value, (dict, tuple, list)):
                value = json.dumps(value)
            print(f"{key:>20}: {value}")
        print(f"{'weights':>20}: {', '.join(sets) if sets else 'none published'}")
        for set_name, spec in sets.items():
            where = spec.get("hub_id") or spec["files"]["top"]["url"]
            digest = (("sha256 checked by the hub as it downloads" if spec["sha256"] is None
                       else f"sha256 {spec['sha256']}") if spec.get("hub_id")
                      else f"md5 {spec['files']['top']['md5']} (top), "
                           f"{spec['files']['notop']['md5']} (no top)")
            print(f"{set_name:>20}: {spec['publisher']}; {where}; {digest}; top-1 "
                  f"{spec['top1']}% at {spec['input_size']}x{spec['input_size']} "
                  f"({spec['top1_source']}); preprocessing {spec['preprocessing']['mode']}; "
                  f"licence {spec['license']}"
                  + (f"; builds with {json.dumps(spec['conventions'])}"
                     if spec["conventions"] else ""))
        return 0
    model = cnnzoo.create_model(args.name, **model_kwargs(args))
    model.summary()
    return 0
