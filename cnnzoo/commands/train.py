"""`cnnzoo train`: train a zoo model on a dataset into a run folder.

Running the same command again resumes a run that was cut short. Nothing
heavy is imported until `run`.
"""

from cnnzoo import _validation as v
from cnnzoo import recipe
from cnnzoo.commands.zoo import parse_rates


def parse_size(text, name="size"):
    """`"32"` -> 32; `"32,48"` or `"32x48"` -> `(32, 48)`."""
    parts = str(text).replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2):
        v.fail("Expected a size as N or H,W (e.g. 32 or 32,48).", name, text)
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def parse_jit(text):
    choices = {"auto": "auto", "true": True, "on": True, "false": False, "off": False}
    if str(text).lower() not in choices:
        v.fail("Expected --jit to be auto, on or off.", "jit", text)
    return choices[str(text).lower()]


def add_arguments(parser):
    # Defaults mirror `cnnzoo.train.train`'s; importing it here would import TensorFlow.
    parser.add_argument("--model", default="simple_cnn",
                        help="Model name (see `cnnzoo list`). Default: simple_cnn.")
    parser.add_argument("--data", default="digits",
                        help="digits (default), shapes, FILE.npz or a FOLDER with one "
                             "sub-folder of images per class.")
    parser.add_argument("--out", required=True,
                        help="Run folder. Run the same command again to resume, with more "
                             "--epochs (a fine-tuning run: --fine-tune-epochs) to extend the "
                             "run.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Remove the run in --out (only the files a run writes) and "
                             "start afresh.")
    parser.add_argument("--input-size", type=lambda t: parse_size(t, "input_size"), default=None,
                        help="N or H,W the model sees (images are resized inside the model).")
    parser.add_argument("--image-size", type=lambda t: parse_size(t, "image_size"), default=None,
                        help="Resize images while loading (needed for folders of mixed sizes).")
    parser.add_argument("--color-mode", default=None, choices=["grayscale", "rgb"],
                        help="Convert every image to grey or RGB (needed for a folder of mixed "
                             "channel counts).")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="Leave out unreadable image files of a folder (listed once) "
                             "instead of stopping at the first.")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="Use a stratified subset of this many examples.")
    parser.add_argument("--validation-split", type=float, default=0.15)
    parser.add_argument("--test-split", type=float, default=0.15)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patience", type=int, default=5,
                        help="Epochs without a lower validation loss before stopping.")
    parser.add_argument("--activation", default=None, help="Hidden activation (default: the model's).")
    parser.add_argument("--dropout-rate", type=float, default=None,
                        help="Classifier-head dropout (default: the paper's).")
    parser.add_argument("--block-dropout-rate", type=parse_rates, default=None,
                        help="Dropout inside the blocks: one rate or one per stage (a,b,c).")
    parser.add_argument("--dropout-type", default=None, choices=["standard", "spatial"])
    parser.add_argument("--implementation", default=None, choices=["keras", "primitive"])
    parser.add_argument("--drop-path-rate", type=float, default=None,
                        help="Stochastic depth (residual models).")
    parser.add_argument("--weights", default=None,
                        help="Pretrained weights: imagenet, a set name (see `cnnzoo info "
                             "MODEL`) or a file: a new head trains on the frozen backbone "
                             "(--epochs), then optionally the top stages (--fine-tune-epochs).")
    parser.add_argument("--fine-tune-epochs", type=int, default=0, metavar="N",
                        help="With --weights: epochs with the top stages unfrozen (batch norm "
                             "stays frozen). Default: 0.")
    parser.add_argument("--unfreeze", default=None, metavar="all|K",
                        help="The stages fine-tuning trains: all (default) or the top K.")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None, metavar="LR",
                        help="Default: a tenth of --learning-rate.")
    # --optimizer, --learning-rate, --weight-decay, --schedule, ..., --augment.
    recipe.add_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto",
                        choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--jit", type=parse_jit, default="auto", help="auto, on or off (XLA).")
    parser.add_argument("--threads", default="auto",
                        help="TensorFlow's intra-op threads: auto (1 on a CPU for tiny "
                             "models, one per core otherwise) or a number.")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                        help="0 silent, 1 progress bars (default), 2 one line per epoch.")


def run(args):
    from cnnzoo import train

    train.train(
        args.model, args.data, out=args.out, input_size=args.input_size,
        epochs=args.epochs, batch_size=args.batch_size, activation=args.activation,
        dropout_rate=args.dropout_rate, block_dropout_rate=args.block_dropout_rate,
        dropout_type=args.dropout_type, implementation=args.implementation,
        drop_path_rate=args.drop_path_rate, seed=args.seed, precision=args.precision,
        jit=args.jit, patience=args.patience,
        image_size=args.image_size, num_samples=args.num_samples,
        validation_split=args.validation_split, test_split=args.test_split,
        color_mode=args.color_mode, skip_bad_images=args.skip_bad_images,
        verbose=args.verbose, threads=args.threads, weights=args.weights,
        fine_tune_epochs=args.fine_tune_epochs, unfreeze=args.unfreeze,
        fine_tune_learning_rate=args.fine_tune_learning_rate, overwrite=args.overwrite,
        **recipe.from_arguments(args).given(),
    )
    return 0
