"""`cnnzoo predict`: classify images with an exported model.

Prints the top classes with probabilities and class names for each image;
`--json` prints one JSON document for machines. Nothing heavy is imported
until `run`.
"""

import json


def add_arguments(parser):
    parser.add_argument("export", metavar="EXPORT",
                        help="A SavedModel or export folder (from `cnnzoo export`) or a "
                             ".keras file.")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="Image files, or folders whose images (recursively) to classify.")
    parser.add_argument("--top-k", type=int, default=3, help="Classes to show per image.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")


def run(args):
    from cnnzoo import predict

    results = predict.predict(args.export, args.images, top_k=args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(predict.format_results(results))
    return 0
