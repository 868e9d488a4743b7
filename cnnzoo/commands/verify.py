"""`cnnzoo verify`: check the primitive ReLU/Dropout against keras.layers.

Prints the report as a table, optionally writes it as JSON, and exits with
code 1 when any check fails.
"""

import sys

from cnnzoo import _validation as v


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="Smaller samples and only the two smallest models "
                             "(under a minute on 2 CPU cores).")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                        help="Also write the report as JSON to PATH.")
    parser.add_argument("--models", default=None, metavar="PATTERN",
                        help="fnmatch pattern of the models to check, e.g. 'resnet*' "
                             "(default: all; with --quick the two smallest). "
                             "'none' skips the model checks.")
    parser.add_argument("--no-layers", action="store_true",
                        help="Skip the layer checks (models only).")


def run(args):
    # Checked before any work: a bad --json would only fail once every check had run.
    if args.json_path is not None:
        v.check_output_file("json", args.json_path)
    models = args.models
    if models is not None and models.lower() == "none":
        models = []
    if models == [] and args.no_layers:
        v.fail("Expected at least one check to be selected: --models none with --no-layers "
               "checks nothing.", "models", args.models)

    from cnnzoo import verify

    def progress(line):
        print(line, file=sys.stderr, flush=True)

    report = verify.verify(quick=args.quick, models=models, layers=not args.no_layers,
                           progress=progress)
    print(report.format_table())
    if args.json_path:
        report.to_json(args.json_path)
        print(f"report written to {args.json_path}")
    return 0 if report.passed else 1
