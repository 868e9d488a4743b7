"""`cnnzoo tune`: search dropout rates with Keras Tuner (the main job).

With no arguments: a random search of `simple_cnn`'s dropout rates on the
bundled digits, a few minutes on 2 CPU cores. Running the same command again
resumes. Nothing heavy is imported until `run`, so `--help` is instant.
"""

from cnnzoo.commands.train import parse_size

DEFAULTS = {
    "model": "simple_cnn",
    "data": "digits",
    "tuner": "random",
    "max_trials": 10,
    "epochs": 10,
    "objective": "val_accuracy",
    "seed": 0,
    "out": "tune_results",
    "batch_size": 32,
}


def add_arguments(parser):
    d = DEFAULTS
    parser.add_argument("--model", default=d["model"],
                        help=f"Zoo model to tune (see `cnnzoo list`). Default: {d['model']}.")
    parser.add_argument("--data", default=d["data"],
                        help="digits, shapes, a .npz file or an image folder. "
                             f"Default: {d['data']}.")
    parser.add_argument("--tuner", default=d["tuner"], choices=["random", "bayesian", "hyperband"],
                        help=f"Keras Tuner search. Default: {d['tuner']}.")
    parser.add_argument("--max-trials", type=int, default=d["max_trials"],
                        help="Trials to run (random and bayesian; hyperband sizes itself from "
                             f"--epochs). Raise it to extend a finished search. "
                             f"Default: {d['max_trials']}.")
    parser.add_argument("--epochs", type=int, default=d["epochs"],
                        help=f"Epochs per trial (hyperband: the most). Default: {d['epochs']}.")
    parser.add_argument("--objective", default=d["objective"],
                        choices=["val_accuracy", "val_loss", "accuracy", "loss"],
                        help=f"Metric to optimize. Default: {d['objective']}.")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help="Seeds the splits, the oracle and every trial. Default: 0.")
    parser.add_argument("--out", default=d["out"],
                        help="Folder for everything the search writes (Keras Tuner's state "
                             f"too). Default: ./{d['out']}.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Start afresh in --out instead of resuming.")
    parser.add_argument("--precision", default="auto",
                        choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"],
                        help="Default: auto (bfloat16 where the hardware runs it fast).")
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"],
                        help="XLA compilation. Default: auto (on for GPUs and with JAX, off for "
                             "TensorFlow on CPUs).")
    parser.add_argument("--threads", default="auto",
                        help="TensorFlow's intra-op threads. Default: auto (1 on a CPU for "
                             "models whose training batch is tiny, as the default search's; "
                             "one per core otherwise).")
    parser.add_argument("--distribution", default="none", choices=["none", "mirrored"],
                        help="mirrored: each trial on every local GPU (TensorFlow "
                             "MirroredStrategy; Keras DataParallel on JAX).")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"],
                        help=f"Default: {d['batch_size']}.")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="Use a stratified subset of this many examples.")
    parser.add_argument("--image-size", type=lambda t: parse_size(t, "image_size"),
                        default=None,
                        help="N or H,W: resize the images to it when loading.")
    parser.add_argument("--color-mode", default=None, choices=["grayscale", "rgb"],
                        help="Convert every image to grey or RGB (default: keep their "
                             "channels, which must then agree across a folder).")
    parser.add_argument("--per-stage", action="store_true",
                        help="Search one block dropout rate per stage instead of one shared.")
    parser.add_argument("--search-learning-rate", action="store_true",
                        help="Also search Adam's learning rate (1e-4 to 1e-2, log scale).")
    parser.add_argument("--search-activation", action="store_true",
                        help="Also search the activation (relu, leaky_relu, gelu).")
    parser.add_argument("--no-export", action="store_true",
                        help="Do not export the best model.")
    parser.add_argument("--chief", metavar="HOST:PORT", default=None,
                        help="Distributed search: alone, be the chief listening on HOST:PORT "
                             "(0.0.0.0 for every interface); with --worker, the chief's "
                             "address.")
    parser.add_argument("--worker", metavar="ID", default=None,
                        help="Distributed search: be worker ID (needs --chief). Start a worker "
                             "again with the same ID to get its unfinished trial back.")
    parser.add_argument("--worker-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="Distributed search, chief: hand a running trial to another "
                             "worker when nothing has been heard of it for SECONDS (its "
                             "worker has died; live workers report every 30 s, so at least "
                             "60). 0: wait for it forever. Default: 300.")
    parser.add_argument("--pack", type=_pack, default="auto", metavar="K",
                        help="Train K trials at once, packed side by side in one model (same "
                             "results as one at a time; faster per epoch, slower to compile). "
                             "Default: auto (on a CPU running each op on one thread, one trial "
                             "per core for 2,000 training steps or more over all trials; on a "
                             "GPU, for 50,000 or more, up to 8 small trials per step; else 1).")
    parser.add_argument("--weights", default=None,
                        help="Pretrained weights every trial starts from: imagenet, a set name "
                             "(see `cnnzoo info MODEL`) or a file.")
    parser.add_argument("--quiet", action="store_true", help="Print only errors.")


def _pack(text):
    """`--pack`: "auto" or an integer, checked by `tuning.search`."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def run(args):
    import logging

    # TensorFlow warns about retracing when many models train in one process,
    # which is what a search is.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    import tuning
    from tuning.tuners import SearchFailedError

    kwargs = {}
    if args.per_stage:
        kwargs["per_stage"] = True
    if args.search_learning_rate:
        kwargs["learning_rate"] = True
    if args.search_activation:
        kwargs["activation"] = True
    if args.weights is not None:
        kwargs["weights"] = args.weights
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    try:
        tuning.search(
            args.model, args.data, tuner=args.tuner, max_trials=args.max_trials,
            epochs=args.epochs, objective=args.objective, seed=args.seed, out=args.out,
            precision=args.precision, jit=jit, distribution=args.distribution,
            batch_size=args.batch_size, image_size=args.image_size,
            num_samples=args.num_samples, overwrite=args.overwrite,
            export=not args.no_export, chief=args.chief, worker=args.worker,
            hypermodel_kwargs=kwargs, quiet=args.quiet, pack=args.pack,
            worker_timeout=None if args.worker_timeout == 0 else args.worker_timeout,
            threads=args.threads, color_mode=args.color_mode,
        )
    except SearchFailedError as error:
        import sys

        print(f"cnnzoo tune: {error}", file=sys.stderr)
        return 1
    return 0
