"""`cnnzoo tune`: search dropout rates with Keras Tuner (the main job).

With no arguments: a random search of `simple_cnn`'s dropout rates on the
bundled digits, a few minutes on 2 CPU cores. Running the same command again
resumes. The options, their defaults and their checks are those of
`tuning.config.SearchConfig` (which imports nothing heavy, so `--help` is
instant); the search itself imports TensorFlow in `run`.
"""


def add_arguments(parser):
    from tuning import config

    config.add_arguments(parser)


def run(args):
    import logging

    from tuning import config

    settings = config.from_arguments(args)  # checked: a bad value exits 2
    # TensorFlow warns about retracing when many models train in one process,
    # which is what a search is.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    import tuning
    from tuning.tuners import SearchFailedError

    try:
        tuning.run(settings)
    except SearchFailedError as error:
        import sys

        print(f"cnnzoo tune: {error}", file=sys.stderr)
        return 1
    return 0
