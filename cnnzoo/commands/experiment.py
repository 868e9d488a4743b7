"""`cnnzoo experiment NAME --out DIR`: run a ReLU/Dropout experiment.

Each experiment writes a markdown report, a JSON file and PNG plots into
DIR and prints where they went. Every experiment has its own options
(`cnnzoo experiment NAME --help`).
"""

import importlib

# name -> (module, one-line help); the modules are imported only to add the
# chosen experiment's options, so `--help` stays light.
EXPERIMENTS = {
    "activations": ("cnnzoo.experiments.activations",
                    "ReLU, sigmoid and tanh and their derivatives."),
    "vanishing-gradients": ("cnnzoo.experiments.vanishing_gradients",
                            "Per-layer gradient norms in plain CNNs of depth 5, 10, 20."),
    "overfitting": ("cnnzoo.experiments.overfitting",
                    "simple_cnn on a small digits subset with dropout 0, 0.25, 0.5 "
                    "(--augment: and with augmentation)."),
    "ordered-batches": ("cnnzoo.experiments.ordered_batches",
                        "Class-sorted vs shuffled shapes, with and without dropout."),
}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="experiment", metavar="NAME", required=True)
    for name, (module_name, help_text) in EXPERIMENTS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--out", required=True, metavar="DIR",
                       help="Folder for the report, JSON and plots (files in it are replaced).")
        if name != "activations":
            p.add_argument("--seed", type=int, default=0, help="Default: 0.")
        importlib.import_module(module_name).add_arguments(p)


def run(args):
    from cnnzoo import experiments

    options = {k: val for k, val in vars(args).items()
               if k not in ("command", "experiment", "out", "_module") and not k.startswith("_")}
    result = experiments.run(args.experiment, args.out, **options)
    print(f"{args.experiment}: report {result['files'][0]}")
    return 0
