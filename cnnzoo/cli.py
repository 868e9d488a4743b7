"""The `cnnzoo` command.

Each sub-command lives in `cnnzoo/commands/<name>.py` with `add_arguments(parser)`
and `run(args) -> int`, and is imported only when it runs, so `cnnzoo --help`,
`list` and `info` never import TensorFlow; the other commands start it
without its start-up notices (`cnnzoo._native_log`). Bad input (a
`ValueError`) prints one line and exits with code 2.
"""

import gc
import importlib
import os
import sys

from cnnzoo import commands

# name -> (module, one-line help). The order is the order of `--help`.
COMMANDS = {
    "list": ("cnnzoo.commands.zoo", "List the registered models."),
    "info": ("cnnzoo.commands.zoo", "Show one model's metadata."),
    "summary": ("cnnzoo.commands.zoo", "Build a model and print its Keras summary."),
    "tune": ("cnnzoo.commands.tune", "Search dropout rates with Keras Tuner (the main job)."),
    "train": ("cnnzoo.commands.train", "Train a zoo model on a dataset."),
    "export": ("cnnzoo.commands.export", "Export a trained model (SavedModel, .keras, ...)."),
    "predict": ("cnnzoo.commands.predict", "Classify images with an exported model."),
    "verify": ("cnnzoo.commands.verify", "Check the primitive ReLU/Dropout against keras.layers."),
    "experiment": ("cnnzoo.commands.experiment", "Run a ReLU/Dropout experiment."),
    "bench": ("cnnzoo.commands.bench", "Run the benchmark suite."),
}


# The commands that never import Keras; the others start it first, without
# TensorFlow's start-up notices (`cnnzoo._native_log`).
LIGHT_COMMANDS = ("list", "info")


class _Parser(commands.Parser):
    """argparse's own errors (an unknown or missing option) in one line too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`).\n")


def _parser(command=None):
    parser = _Parser(
        prog="cnnzoo",
        description="A Keras 3 model zoo whose ReLU and Dropout you can see, swap, "
                    "check and tune.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            if hasattr(module, "add_arguments_for"):
                module.add_arguments_for(name, sub_parser)
            else:
                module.add_arguments(sub_parser)
            sub_parser.set_defaults(_module=module)
    return parser


def _version():
    from cnnzoo import __version__

    return f"cnnzoo {__version__}"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    commands.check_subcommands(parser, argv)  # names, with the project's error
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Named by the sub-command's parser, which points to its own --help.
        command = parser.subcommands.choices.get(args.command) if args.command else None
        (command or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        commands.convert_types(args)
        if args.command not in LIGHT_COMMANDS:
            from cnnzoo import _native_log

            _native_log.start_backend(tensorflow=args.command != "summary")
        code = args._module.run(args)
    except ValueError as error:
        message = " ".join(str(error).split())
        print(f"cnnzoo {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnzoo {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def run(argv=None):
    """The `cnnzoo` program: `main(argv)`, then this process exits with its code.

    Before it exits, the objects alive are frozen (`gc.freeze`), so the
    interpreter's last garbage collection skips them: once TensorFlow has
    started, that collection would walk about half a million objects and
    keep the process alive well after its work is done (the measurement is
    in `benchmarks/README.md`). Exit handlers (`atexit`) still run.
    To run a command within a program, call `main`, which returns.
    """
    try:
        code = main(argv)
    finally:
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
