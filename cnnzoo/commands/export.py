"""`cnnzoo export`: ship a trained model as a SavedModel, .keras, TFLite or ONNX folder.

The source is a finished run folder (`cnnzoo train --out RUN_DIR`) or a
`.keras` file. Nothing heavy is imported until `run`.
"""

import sys


def add_arguments(parser):
    parser.add_argument("source", metavar="RUN_DIR|MODEL.keras",
                        help="A finished run folder or a .keras model file.")
    parser.add_argument("--format", default="saved_model",
                        choices=["saved_model", "keras", "tflite", "onnx"],
                        help="Default: saved_model (needs nothing beyond the core install); "
                             "onnx needs `pip install 'cnnzoo[onnx]'`.")
    parser.add_argument("--out", required=True, help="The export folder to create.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace an existing export at --out.")
    parser.add_argument("--serving-version", type=int, default=None, metavar="N",
                        help="Write TensorFlow Serving's layout: OUT/N/ (saved_model only).")


def run(args):
    from cnnzoo import export

    model, class_names, card = export.load_source(args.source)
    try:
        export.export_model(model, args.out, format=args.format, overwrite=args.overwrite,
                            class_names=class_names, model_card=card,
                            serving_version=args.serving_version)
    except export.ExportVerificationError as error:
        print(f"cnnzoo export: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0
