"""Training runs that keep everything a person needs and survive being killed.

`train(model, data, out=RUN_DIR, ...)` (and `cnnzoo train`) builds a zoo
model that takes raw images (`cnnzoo.pipeline.build_classifier`), trains it
with early stopping on the validation loss, and leaves in `RUN_DIR`:

    run.json              config, runtime, metrics, class names, paths
    model.keras           the best epoch's model (loads with safe_mode=True)
    history.csv           one row per epoch: loss, accuracy, val_loss, val_accuracy,
                          learning_rate (the rate after the epoch)
    learning_curves.png   loss and accuracy, train and validation
    logs/                 TensorBoard logs (`tensorboard --logdir RUN_DIR/logs`)
    checkpoints/          the resume state: the last epoch's and the best epoch's
                          (at most two files, kept at the end to extend the run)

Resume: after every epoch, one file `checkpoints/epoch-NNNN.npz` holds every
model and optimizer variable (dropout seed-generator states included, which
`.keras` files leave out), the early-stopping state and the history, written
atomically (a temporary sibling, then a rename). Running the same command
again after a crash or a SIGKILL continues from the last completed epoch.
Batches are shuffled by a generator seeded with `(seed, epoch)`, so a resumed
run sees the same batches, the same dropout masks and ends with the same
weights and metrics as an uninterrupted one. A run that already finished is
not retrained: the command prints its summary again.

Extend and restart, as `model.fit(initial_epoch=...)` and `tune --max-trials`:
the same command with a larger `--epochs` continues a finished (or cut
short) run from its last epoch's checkpoint, which a finished run keeps,
and leaves the artefacts an uninterrupted run of that many epochs leaves
(the same history, weights and test metrics). It is refused where the
longer run would not be the same run: a learning-rate schedule that spans
the epochs (`cosine`, `step`; a warm-up before a constant rate extends),
more head epochs in a fine-tuning run (its phases would change order: a
larger `fine_tune_epochs` extends its fine-tuning instead), and fewer epochs
than the run's. A run that early stopping ended has nothing to
extend: it is said and the run is left as it is. `overwrite=True`
(`--overwrite`) removes the run's files (only those a run writes) and
starts afresh in the same folder.

Why not `keras.callbacks.BackupAndRestore`: it saves weights with a plain
(non-atomic) write, leaves out the dropout seed states, and does not restore
the early-stopping state, so a resumed run would differ from an
uninterrupted one. Why not `keras.callbacks.CSVLogger`: a kill between its
append and the checkpoint would duplicate a row on resume; `history.csv` is
rewritten atomically from the checkpointed history instead.
"""

import contextlib
import csv
import dataclasses
import datetime
import functools
import io
import json
import math
import os
import re
import sys

import keras
import numpy as np

from cnnzoo import _atomic, _compat_keras, layers, runtime
from cnnzoo import recipe as recipes
from cnnzoo import _validation as v

DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 32
# Adam's (`cnnzoo.recipe.DEFAULT_LEARNING_RATES`).
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_PATIENCE = 5

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CURVES_FILE = "learning_curves.png"
LOG_DIR = "logs"
CHECKPOINT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^epoch-(\d{4,})\.npz$")


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        run_dir: the run folder.
        model: the trained `keras.Model` holding the best epoch's weights.
        history: per-epoch metrics, a dict of lists (`loss`, `accuracy`,
            `val_loss`, `val_accuracy`, ...), as `keras.callbacks.History`.
        best_epoch: the 1-based epoch whose weights were kept.
        epochs_run: epochs trained in total (fewer than asked when stopped early).
        stopped_early: whether early stopping ended the run.
        test_metrics: `{"loss": ..., "accuracy": ...}` on the test split
            (None when the dataset has no test split).
        val_metrics: the best epoch's validation metrics.
        config: the run's configuration (what `run.json` records).
        class_names: one name per class.
        paths: where every artefact is.
        resumed_from: epochs already done when this call started (0 for a
            fresh run).
    """

    run_dir: str
    model: object
    history: dict
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    test_metrics: dict
    val_metrics: dict
    config: dict
    class_names: list
    paths: dict
    resumed_from: int = 0


def train(model="simple_cnn", data="digits", *, out, input_size=None, epochs=DEFAULT_EPOCHS,
          batch_size=DEFAULT_BATCH_SIZE, activation=None, dropout_rate=None,
          block_dropout_rate=None, dropout_type=None, implementation=None,
          drop_path_rate=None, learning_rate=None, seed=0,
          precision="auto", jit="auto", patience=DEFAULT_PATIENCE, image_size=None,
          num_samples=None, validation_split=0.15, test_split=0.15, color_mode=None,
          skip_bad_images=False, verbose=1, threads="auto", weights=None, fine_tune_epochs=0,
          unfreeze=None, fine_tune_learning_rate=None, optimizer="adam", weight_decay=0.0,
          schedule="constant", warmup_epochs=0, label_smoothing=0.0, clipnorm=None,
          augment="none", flip="horizontal", validation_data=None, overwrite=False):
    """Trains a zoo model on a dataset into a run folder, resuming if it was cut short.

    Args:
        model: a name from `cnnzoo.list_models()`. Defaults to `"simple_cnn"`.
        data: `"digits"`, `"shapes"`, a `.npz` file, a folder of class
            sub-folders, `(x, y)` NumPy arrays (split as a `.npz` file's), a
            finite `tf.data.Dataset` or `keras.utils.PyDataset` (read once
            into arrays; see `cnnzoo.data.load_dataset`), or a
            `cnnzoo.data.Dataset` (its splits as they are). Data given in
            memory are recorded by type, shape, dtype and a content hash:
            resuming with other data is refused. Defaults to `"digits"`.
        out: the run folder. A new or empty folder starts a run; a folder
            holding the same run (same configuration) resumes it; the same
            run with more `epochs` extends it (see the module docstring);
            a folder holding a different run is an error, unless `overwrite`.
        input_size: one int or `(height, width)`: what the zoo model sees;
            raw images are resized to it inside the model. Defaults to the
            raw size, raised to the model's minimum.
        epochs: maximum number of epochs. Defaults to 20.
        batch_size: defaults to 32.
        activation, dropout_rate, block_dropout_rate, dropout_type,
            implementation, drop_path_rate: the zoo knobs (see
            `cnnzoo.create_model`); `None` keeps the model's default.
        learning_rate: the optimizer's learning rate (a schedule's peak).
            Defaults to the optimizer's Keras default: 1e-3 for Adam and
            AdamW, 0.01 for SGD.
        seed: seeds weights, batches, dropout masks and the data splits.
            The same seed on the same machine gives the same metrics.
        precision: `"auto"`, `"float32"`, `"mixed_bfloat16"` or
            `"mixed_float16"` (see `cnnzoo.runtime.configure`).
        jit: `"auto"`, True or False: XLA compilation.
        threads: `"auto"` or an int: TensorFlow's intra-op threads, set before
            TensorFlow starts in this process (`cnnzoo.runtime.configure`).
        patience: epochs without a lower validation loss before stopping.
            Defaults to 5.
        image_size, num_samples, validation_split, test_split, color_mode,
            skip_bad_images: passed to `cnnzoo.data.load_dataset` when `data`
            is a name or a path.
        verbose: 0 silent, 1 progress bars and the summary, 2 one line per
            epoch and the summary.
        weights: pretrained weights for the zoo model, as `create_model`'s
            `weights` (`"imagenet"`, a set name, a file). The run is then
            the fine-tuning recipe (`cnnzoo.transfer`): `epochs` of a new
            head on the frozen backbone (batch norm in inference mode), then
            `fine_tune_epochs` with the top stages unfrozen. Without
            `input_size` or `image_size`, images of another size than the
            weights' training size are resized to it inside the model.
            `block_dropout_rate` is the unfrozen stages' dropout. Defaults
            to `None`.
        fine_tune_epochs: epochs of the fine-tuning phase (with `weights`
            only). Defaults to 0: the backbone stays frozen.
        unfreeze: `"all"` or the number of top stages the fine-tuning phase
            trains (batch norm stays frozen). Defaults to `"all"`.
        fine_tune_learning_rate: the fine-tuning phase's learning rate, with
            a new optimizer of the recipe's kind, its schedule over the
            fine-tuning epochs (no warm-up). Defaults to a tenth of
            `learning_rate` (resolved).
        optimizer, weight_decay, schedule, warmup_epochs, label_smoothing,
            clipnorm, augment, flip: the training recipe (`cnnzoo.recipe.Recipe`):
            `"adam"`, `"adamw"` or `"sgd"` (momentum 0.9, Nesterov); Keras's
            decoupled weight decay (0: none); `"constant"`, `"cosine"` or
            `"step"` learning rate over the `epochs`, after
            `warmup_epochs` of linear warm-up; label smoothing in [0, 1);
            gradient clipping by norm (`None`: none); an augmentation
            policy (`"none"`, `"light"`, `"default"`, `"strong"`,
            `"randaugment"`; see `cnnzoo.recipe.augment`), applied in
            training only, after a random flip (`"horizontal"`,
            `"vertical"`, `"horizontal_and_vertical"` or `"none"`: no flip,
            what digits and text need). The defaults are Adam at a constant
            learning rate, with no regularisation.
        validation_data: `(x, y)` arrays or a pipeline to validate on, as
            `model.fit`'s: `data` then gives the train and test splits
            (`validation_split` is not used). Defaults to `None`.
        overwrite: remove the run in `out` (the files a run writes, nothing
            else) and start afresh. Defaults to False.

    Returns:
        A `TrainResult`.

    Example:

    >>> result = cnnzoo.train.train("simple_cnn", "digits", out="runs/digits",
    ...                             epochs=10, dropout_rate=0.3)
    >>> result.test_metrics["accuracy"]
    """
    from cnnzoo import data as data_module

    epochs = v.check_int("epochs", epochs, low=1)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    recipe = recipes.Recipe(optimizer=optimizer, learning_rate=learning_rate,
                            weight_decay=weight_decay, schedule=schedule,
                            warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
                            clipnorm=clipnorm, augment=augment, flip=flip)
    recipes.check_epochs(recipe, epochs)
    seed = v.check_int("seed", seed, low=0)
    patience = v.check_int("patience", patience, low=0)
    verbose = v.check_choice("verbose", verbose, (0, 1, 2))
    overwrite = v.check_bool("overwrite", overwrite)
    threads = runtime.check_threads(threads)
    out = v.check_output_folder("out", out)
    run_dir = os.path.abspath(os.path.expanduser(out))
    knobs = {k: val for k, val in (("activation", activation), ("dropout_rate", dropout_rate),
                                   ("block_dropout_rate", block_dropout_rate),
                                   ("dropout_type", dropout_type),
                                   ("implementation", implementation),
                                   ("drop_path_rate", drop_path_rate)) if val is not None}
    # Fails fast on an unknown model or knob, before any data is read.
    from cnnzoo import weights as pretrained
    from cnnzoo.models import _registry

    _registry.resolve_config(model, **knobs)  # the knobs' own checks, at the default input
    from cnnzoo import transfer

    plan = transfer.check_plan(model, weights=weights, fine_tune_epochs=fine_tune_epochs,
                               unfreeze=unfreeze,
                               fine_tune_learning_rate=fine_tune_learning_rate,
                               learning_rate=recipe.resolved_learning_rate(),
                               block_dropout_rate=block_dropout_rate,
                               drop_path_rate=drop_path_rate)
    if weights is not None:
        # Checked now (a set name or a file), loaded when the model is built.
        pretrained.resolve(model, _registry.model_info(model), weights)
        knobs["weights"] = weights

    if isinstance(data, data_module.Dataset):
        dataset = data_module.load_dataset(data, validation_data=validation_data)
        data_config = {"dataset": dataset.name, "source": dataset.source,
                       **data_module.record(data, dataset)}
    else:
        dataset = data_module.load_dataset(data, image_size=image_size,
                                           num_samples=num_samples,
                                           validation_split=validation_split,
                                           test_split=test_split, seed=seed,
                                           color_mode=color_mode,
                                           skip_bad_images=skip_bad_images,
                                           validation_data=validation_data)
        data_config = {
            # A name as given; a file or folder as its absolute path; arrays by their form.
            "dataset": (dataset.name if dataset.origin and "form" in dataset.origin
                        else dataset.source if os.path.isabs(dataset.source) else data),
            "image_size": image_size, "num_samples": num_samples,
            "validation_split": None if validation_data is not None else validation_split,
            "test_split": test_split, "color_mode": color_mode,
            # Data in memory: their form, shapes, dtypes and content hash (never the arrays).
            **(dataset.origin or {}),
        }
        if skip_bad_images:  # recorded only where set: earlier runs resume as they were
            data_config["skipped_images"] = [os.path.relpath(f, dataset.source)
                                             for f in dataset.skipped]
    if plan is not None and input_size is None and image_size is None:
        input_size = transfer.default_input_size(model, weights, dataset.input_shape)
    if len(dataset.y_val) == 0:
        v.fail("Expected a validation split (early stopping watches the validation loss).",
               "validation_split", validation_split)

    config = _jsonable({
        "model": model,
        "data": data_config,
        "input_size": input_size,
        # Only where given, so that the runs before weights existed still resume.
        **({"weights": str(weights), "transfer": plan.config()} if weights is not None else {}),
        **{k: knobs.get(k) for k in ("activation", "dropout_rate", "block_dropout_rate",
                                     "dropout_type", "implementation", "drop_path_rate")},
        "epochs": epochs,
        "batch_size": batch_size,
        # optimizer, learning_rate (resolved), weight_decay, schedule, ..., augment.
        **recipe.settings(),
        "loss": "sparse_categorical_crossentropy",
        "seed": seed,
        "precision": precision,
        "jit": jit,
        "patience": patience,
        "early_stopping": {"monitor": "val_loss", "patience": patience},
    })
    previous = _check_run_dir(run_dir, config, overwrite=overwrite)
    if overwrite and os.path.isdir(run_dir):
        if verbose and previous is not None:
            print(f"Removing the run in {run_dir} (--overwrite).")
        _remove_run(run_dir)
        previous = None
    old_fine = _fine_tune_epochs(previous["config"]) if previous else 0
    fine = plan.fine_tune_epochs if plan is not None else 0
    extending = previous is not None and (previous["config"]["epochs"] != epochs
                                          or old_fine != fine)
    if extending and _check_extension(run_dir, previous, epochs, recipe, fine=fine,
                                      old_fine=old_fine) == "stopped":
        result = _load_result(run_dir, previous)
        if verbose:
            print(f"The run in {run_dir} was stopped early after epoch "
                  f"{previous['epochs_run']} of {previous['config']['epochs'] + old_fine} (no "
                  f"lower validation loss in {patience} epochs); more epochs would not train "
                  f"it: nothing to extend.")
            print(summary_text(result))
        return result
    if not extending and previous is not None and previous.get("status") == "complete":
        result = _load_result(run_dir, previous)
        if verbose:
            print(f"The run in {run_dir} is already complete; nothing to train.")
            print(summary_text(result))
        return result
    if extending and verbose:
        print(f"Extending the fine-tuning of the run in {run_dir} from {old_fine} to {fine} "
              f"epochs." if fine != old_fine else
              f"Extending the run in {run_dir} from {previous['config']['epochs']} to "
              f"{epochs} epochs.")

    # `runtime.configure` sets the global dtype policy; put the caller's back afterwards.
    policy = keras.config.dtype_policy()
    try:
        return _train(model, dataset, run_dir, config, previous, knobs, input_size=input_size,
                      epochs=epochs, batch_size=batch_size, recipe=recipe, seed=seed,
                      precision=precision, jit=jit, patience=patience, verbose=verbose,
                      threads=threads, plan=plan)
    finally:
        keras.config.set_dtype_policy(policy)


def _train(model, dataset, run_dir, config, previous, knobs, *, input_size, epochs, batch_size,
           recipe, seed, precision, jit, patience, verbose, threads, plan=None):
    if plan is not None:
        # Every dropout a VariableDropout: the phases change rates, not the model.
        knobs = {**knobs, "tunable_dropout": True, "block_dropout_rate": 0.0}
    # Counted before TensorFlow starts, so that `threads` can still be set.
    step_flops = (runtime.count_step_flops(
        lambda: build_model(model, dataset, input_size=input_size, **knobs), batch_size)
        if threads == "auto" else None)
    # Builds the model before anything is written, so a bad knob leaves nothing behind.
    rt = runtime.configure(precision, jit, model=model, threads=threads,
                           step_flops=step_flops)
    keras.utils.set_random_seed(seed)
    _enable_determinism(rt["devices"])
    augment = {"augment": recipe.augment, "augment_seed": seed, "augment_flip": recipe.flip}
    net = build_model(model, dataset, input_size=input_size, **augment, **knobs)
    compile_phase = functools.partial(
        _set_phase, net, model, plan=plan, recipe=recipe, jit=rt["jit"], epochs=epochs,
        steps_per_epoch=math.ceil(len(dataset.y_train) / batch_size))

    # The phase the newest checkpoint was written in: the model is set up
    # for it (trainable set, optimizer) before its variables are restored.
    latest = _latest_state(run_dir)
    phase = latest.get("phase", 1) if latest else 1
    compile_phase(phase)

    os.makedirs(os.path.join(run_dir, CHECKPOINT_DIR), exist_ok=True)
    _remove_temporaries(run_dir)
    paths = _paths(run_dir)
    run_record = {
        "status": "running",
        "config": config,
        "runtime": {**rt, **_versions()},
        "data": dataset.describe(),
        "class_names": list(dataset.class_names),
        "params": int(net.count_params()),
        "paths": paths,
        "started": previous.get("started") if previous else _now(),
        "resumed_at_epochs": list(previous.get("resumed_at_epochs", [])) if previous else [],
    }

    state = _restore_latest(net, run_dir)
    done = state["epoch"] if state else 0
    if verbose:
        c = dataset.input_shape[2]
        from cnnzoo import pipeline

        size = pipeline.model_input_size(model, dataset.input_shape, input_size)[1]
        seen = pipeline.describe_resize(model, dataset.input_shape, size,
                                        weights=knobs.get("weights"))
        print(f"Training {model} ({net.count_params():,} parameters) on {dataset.name}: "
              f"{len(dataset.y_train)} train / {len(dataset.y_val)} validation / "
              f"{len(dataset.y_test)} test images; {seen}, {c} channel{'s' if c > 1 else ''}, "
              f"{dataset.num_classes} classes; "
              f"{rt['backend']} on {', '.join(rt['devices'])}, {rt['precision']}, "
              f"XLA {'on' if rt['jit'] else 'off'}"
              + (f", {rt['threads']} intra-op thread{'s' if rt['threads'] > 1 else ''}"
                 if rt["threads"] else "") + f". Run folder: {run_dir}")
        from cnnzoo import data as data_module

        given = data_module.origin_text(dataset.origin)
        if given:
            print(f"In memory: {given}.")
        print(f"Recipe: {recipes.describe(recipe)}.")
        if plan is not None:
            print(_plan_text(config, epochs, plan))
    if done:
        run_record["resumed_at_epochs"].append(done)
        if verbose:
            print(f"Resuming {run_dir} after epoch {done} (phase {phase})."
                  if plan and plan.fine_tune_epochs else
                  f"Resuming {run_dir} after epoch {done}.")
    _atomic.write_json(paths["run"], run_record)

    batches = ShuffledBatches(dataset.x_train, dataset.y_train, batch_size, seed)
    while True:
        start = state.get("phase_start", 0) if state and phase == 2 else 0
        end = epochs if phase == 1 else start + plan.fine_tune_epochs
        if not (state is not None and (state["stopped"] or state["epoch"] >= end)):
            state = _fit(net, dataset, batches, run_dir, paths, state, phase=phase, start=start,
                         end=end, patience=patience, verbose=verbose,
                         marked=plan is not None and plan.fine_tune_epochs > 0)
        if phase == 2 or plan is None or not plan.fine_tune_epochs:
            break
        # Phase 2 starts from phase 1's best epoch, with a new optimizer.
        phase = 2
        load_variables(net, os.path.join(run_dir, CHECKPOINT_DIR, state["best_file"]),
                       model_only=True)
        compile_phase(phase)
        state = {**state, "phase": 2, "phase_start": state["epoch"], "early_stopping": None,
                 "stopped": False}
        if verbose:
            print(f"Fine-tuning from epoch {state['epoch'] + 1}: "
                  f"{_unfrozen_text(plan)} unfrozen (batch norm frozen), learning rate "
                  f"{plan.fine_tune_learning_rate:g}.")
    if plan is not None:
        # The saved model holds plain dropout layers, at the rates the run ended with.
        net = _plain_model(net, model, dataset, input_size, {**knobs, **augment}, plan,
                           run_dir, state, recipe)
    return _finish(run_dir, net, dataset, state, run_record, batch_size, done, verbose,
                   best_loaded=plan is not None)


def _fit(net, dataset, batches, run_dir, paths, state, *, phase, start, end, patience, verbose,
         marked):
    """One phase's `fit`, from the restored `state`; returns the state after its last epoch."""
    same_phase = state is not None and state.get("phase", 1) == phase
    early = ResumableEarlyStopping(monitor="val_loss", patience=patience,
                                   state=state["early_stopping"] if same_phase else None,
                                   verbose=int(verbose > 0))
    checkpoint = RunCheckpoint(run_dir, batches, early, state, phase=phase, phase_start=start)
    # Keras's progress bar ahead of the marker (Keras adds its own last, where
    # it would show the marker as a metric, `phase: 1.0000`); none when silent.
    progbar = [keras.callbacks.ProgbarLogger()] if verbose else []
    callbacks = [*progbar, PhaseMarker(phase)] if marked else []
    callbacks += [early, checkpoint]
    if _has_tensorflow():  # Keras's TensorBoard writes with TensorFlow's summary ops
        callbacks.append(keras.callbacks.TensorBoard(log_dir=paths["logs"], write_graph=False))
    runtime.prepare_training(net, dataset.x_train, dataset.y_train)
    net.fit(batches, validation_data=(dataset.x_val, dataset.y_val), epochs=end,
            initial_epoch=state["epoch"] if state else 0, callbacks=callbacks, shuffle=False,
            verbose=verbose)
    return checkpoint.state


def _set_phase(net, model, phase, *, plan, recipe, jit, epochs, steps_per_epoch):
    """Freezes for `phase` (with a plan) and compiles it with the recipe.

    Phase 2 gets a new optimizer of the recipe's kind at the fine-tuning
    rate, its schedule spanning the fine-tuning epochs (without warm-up).
    """
    if plan is not None:
        from cnnzoo import transfer

        transfer.set_phase(net, model, phase, plan)
    if phase == 2:
        recipe = dataclasses.replace(recipe, warmup_epochs=0)
        compile_model(net, recipe=recipe, learning_rate=plan.fine_tune_learning_rate, jit=jit,
                      epochs=plan.fine_tune_epochs, steps_per_epoch=steps_per_epoch)
    else:
        compile_model(net, recipe=recipe, jit=jit, epochs=epochs,
                      steps_per_epoch=steps_per_epoch)


def _unfrozen_text(plan):
    if plan.unfreeze == "all":
        return "the whole backbone"
    return f"the top {plan.unfreeze} stage{'s' if plan.unfreeze > 1 else ''}"


def _plan_text(config, epochs, plan):
    text = (f"Fine-tuning recipe: weights {config['weights']}; {epochs} epochs of a new head "
            f"on the frozen backbone (batch norm in inference mode)")
    if plan.fine_tune_epochs:
        text += (f", then {plan.fine_tune_epochs} with {_unfrozen_text(plan)} unfrozen at "
                 f"learning rate {plan.fine_tune_learning_rate:g}")
    return text + "."


def _plain_model(net, model, dataset, input_size, knobs, plan, run_dir, state, recipe):
    """The run's model rebuilt with plain dropout layers, its weights the best epoch's."""
    from cnnzoo import transfer
    from cnnzoo.models._registry import model_info

    load_variables(net, os.path.join(run_dir, CHECKPOINT_DIR, state["best_file"]),
                   model_only=True)
    best_phase = state["history"][state["best_epoch"] - 1].get("phase", 1)
    rates = plan.stage_rates(model_info(model)) if best_phase == 2 else 0.0
    plain_knobs = {**knobs, "tunable_dropout": False, "block_dropout_rate": rates}
    with runtime.dtype_policy(net.dtype_policy):
        plain = build_model(model, dataset, input_size=input_size, **plain_knobs)
    transfer.copy_weights(net, plain)
    return compile_model(plain, recipe=recipe)


# -- building blocks other modules reuse -------------------------------------


def build_model(model_name, dataset, *, input_size=None, augment="none", augment_seed=None,
                augment_flip="horizontal", **zoo_kwargs):
    """Builds the raw-image classifier for `dataset` (`cnnzoo.pipeline.build_classifier`).

    Args:
        model_name: a name from `cnnzoo.list_models()`.
        dataset: a `cnnzoo.data.Dataset` (its input shape and class count).
        input_size: what the zoo model sees (see `train`).
        augment: the augmentation policy (`cnnzoo.recipe.augment`), active
            in training only. Defaults to `"none"`.
        augment_seed: seeds the augmentation. Defaults to `None`.
        augment_flip: its random flip. Defaults to `"horizontal"`.
        **zoo_kwargs: `create_model` knobs.

    Returns:
        An uncompiled `keras.Model`: `images` (raw pixels) in, `probabilities` out.
    """
    from cnnzoo.pipeline import build_classifier

    return build_classifier(model_name, dataset.input_shape, dataset.num_classes,
                            input_size=input_size, augment=augment,
                            augment_seed=augment_seed, augment_flip=augment_flip,
                            **zoo_kwargs)


def compile_model(model, *, learning_rate=None, jit=False, recipe=None, steps_per_epoch=1,
                  epochs=1):
    """Compiles with the recipe's optimizer and loss, and accuracy, as `train` does.

    Args:
        model: the model.
        learning_rate: overrides the recipe's. Defaults to the recipe's.
        jit: XLA compilation.
        recipe: a `cnnzoo.recipe.Recipe`. Defaults to `Recipe()`: Adam at
            1e-3 and sparse categorical cross-entropy.
        steps_per_epoch, epochs: what a learning-rate schedule spans.

    The optimizer's variables are created at once (`runtime.prepare_training`).
    """
    from cnnzoo.recipe import optim

    optim.compile_with(model, recipe or recipes.Recipe(), steps_per_epoch=steps_per_epoch,
                       epochs=epochs, jit=jit, learning_rate=learning_rate)
    return runtime.prepare_training(model)


def _enable_determinism(devices):
    """Makes TensorFlow's GPU kernels deterministic; CPU runs already are.

    Measured here (TF 2.21, 2 CPU cores, simple_cnn on digits): two runs with
    the same seed give bit-identical metrics without the flag, and the flag
    makes training about 3x slower on the CPU, so it is set only where an
    accelerator is used (GPU kernels such as cuDNN's convolution gradients
    are not deterministic by default).
    """
    if devices == ["cpu"] or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


class ShuffledBatches(keras.utils.PyDataset):
    """Training batches `(x, y)` in an order fixed by `(seed, epoch)`.

    Keras shuffles with a global random state that a resumed process cannot
    reproduce; a permutation drawn from `(seed, epoch)` is the same in an
    uninterrupted run and in a resumed one. `RunCheckpoint` sets the epoch.
    """

    def __init__(self, x, y, batch_size, seed):
        # One worker, no multiprocessing: batches come in index order.
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.y))

    def __len__(self):
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, index):
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.x[idx], self.y[idx]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` whose counters can be saved and restored.

    Args:
        state: what `get_state()` returned in the run being resumed, or None.
        **kwargs: `keras.callbacks.EarlyStopping` arguments.
    """

    def __init__(self, *, state=None, **kwargs):
        super().__init__(**kwargs)
        self._restored = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._restored:
            _compat_keras.restore_early_stopping(self, self._restored)

    def get_state(self):
        return _compat_keras.early_stopping_state(self)


class PhaseMarker(keras.callbacks.Callback):
    """Adds `phase` (1 or 2) to each epoch's logs: a column of `history.csv`, a TensorBoard scalar.

    Must come first in the callback list, so that the callbacks after it
    see the marker.
    """

    def __init__(self, phase):
        super().__init__()
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["phase"] = self.phase


class RunCheckpoint(keras.callbacks.Callback):
    """Writes the resume state after every epoch, atomically, in one file.

    Keeps the newest checkpoint and the best one (the lowest validation loss
    of the whole run, whichever phase), deletes the rest, and rewrites
    `history.csv`. Must come after `early_stopping` in the callback list, so
    that the state it saves includes this epoch's decision.

    Args:
        run_dir: the run folder.
        batches: the `ShuffledBatches` whose epoch it sets.
        early_stopping: the run's `ResumableEarlyStopping` (of this phase).
        state: the restored state, or None for a fresh run.
        phase: the fine-tuning phase (`cnnzoo.transfer`) this `fit` trains;
            recorded from phase 2 on, with the epoch it started after
            (`phase_start`).
    """

    def __init__(self, run_dir, batches, early_stopping, state=None, *, phase=1, phase_start=0):
        super().__init__()
        self.run_dir = run_dir
        self.batches = batches
        self.early_stopping = early_stopping
        self.state = state
        self.phase = phase
        self.phase_start = phase_start
        self.history = list(state["history"]) if state else []

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        from cnnzoo.recipe.optim import current_learning_rate

        row = {"epoch": epoch + 1}
        # The phase is a count (1 or 2), the rest are metrics.
        row.update({k: (int(val) if k == "phase" else float(val))
                    for k, val in (logs or {}).items()})
        # The rate of the next step, as Keras's LearningRateScheduler logs it.
        row.setdefault("learning_rate", current_learning_rate(self.model.optimizer))
        self.history.append(row)
        es = self.early_stopping.get_state()
        name = _ckpt_name(epoch + 1)
        improved = not self.state or es["best_epoch"] == epoch and not (
            # A later phase's early stopping starts afresh: its best is the run's only if lower.
            row.get("val_loss", math.inf)
            >= self.history[self.state["best_epoch"] - 1].get("val_loss", math.inf))
        best_file = name if improved else self.state["best_file"]
        best_epoch = epoch + 1 if improved else self.state["best_epoch"]
        self.state = {
            "epoch": epoch + 1,
            "history": self.history,
            "early_stopping": es,
            "stopped": bool(self.model.stop_training),
            "best_file": best_file,
            "best_epoch": best_epoch,
            **({"phase": self.phase, "phase_start": self.phase_start} if self.phase > 1 else {}),
        }
        ckpt_dir = os.path.join(self.run_dir, CHECKPOINT_DIR)
        save_variables(self.model, os.path.join(ckpt_dir, name), extra=self.state)
        # Only after the new file is in place: a kill here leaves extra files, never too few.
        for old in _checkpoints(ckpt_dir):
            if os.path.basename(old) not in (name, best_file):
                os.unlink(old)
        _write_history(os.path.join(self.run_dir, HISTORY_FILE), self.history)


# -- checkpoints ---------------------------------------------------------------


def _ckpt_name(epoch):
    return f"epoch-{epoch:04d}.npz"


def _checkpoints(ckpt_dir):
    if not os.path.isdir(ckpt_dir):
        return []
    names = [n for n in os.listdir(ckpt_dir) if _CKPT_RE.match(n)]
    return [os.path.join(ckpt_dir, n) for n in sorted(names)]


def _all_variables(model):
    # Model variables include every dropout layer's seed-generator state.
    variables = list(model.variables)
    if model.optimizer is not None:
        runtime.prepare_training(model)
        variables += list(model.optimizer.variables)
    return variables


def save_variables(model, path, extra=None):
    """Writes every model and optimizer variable (and `extra`, JSON) to `path` atomically."""
    arrays = {f"v{i:05d}": keras.ops.convert_to_numpy(var.value)
              for i, var in enumerate(_all_variables(model))}
    arrays["__state__"] = np.array(json.dumps(extra or {}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _atomic.write_bytes(path, buffer.getvalue())


def load_variables(model, path, model_only=False):
    """Restores what `save_variables` wrote into `model`; returns `extra`.

    With `model_only`, the model's variables alone (they come first): what
    a checkpoint of another phase, with another optimizer, gives back.
    """
    variables = list(model.variables) if model_only else _all_variables(model)
    with np.load(path, allow_pickle=False) as arrays:
        stored = sorted(k for k in arrays.files if k.startswith("v"))
        if model_only:
            stored = stored[:len(variables)]
        if len(stored) != len(variables):
            v.fail(f"The checkpoint {path} holds {len(stored)} variables but the model has "
                   f"{len(variables)}; it belongs to a different model.", "path", path)
        values = [arrays[k] for k in stored]
        for var, value in zip(variables, values):
            if tuple(var.shape) != value.shape:
                v.fail(f"The checkpoint {path} does not match the model: {var.path} has shape "
                       f"{tuple(var.shape)}, the checkpoint {value.shape}.", "path", path)
        for var, value in zip(variables, values):
            var.assign(value)
        return json.loads(str(arrays["__state__"]))


def _latest_state(run_dir):
    """The state saved with the newest readable checkpoint (no variable loaded); None if none."""
    for path in reversed(_checkpoints(os.path.join(run_dir, CHECKPOINT_DIR))):
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return json.loads(str(arrays["__state__"]))
        except (OSError, ValueError, KeyError, EOFError):
            continue  # `_restore_latest` says which, and skips it too
    return None


def _restore_latest(model, run_dir):
    """Loads the newest complete checkpoint; None when there is none."""
    for path in reversed(_checkpoints(os.path.join(run_dir, CHECKPOINT_DIR))):
        try:
            return load_variables(model, path)
        except (OSError, ValueError, KeyError, EOFError) as error:
            # Files appear only by rename, so this is damage from outside; try older ones.
            print(f"Skipping unreadable checkpoint {path}: {error}", file=sys.stderr)
    return None


# -- the run folder ----------------------------------------------------------------


def _paths(run_dir):
    return {
        "run": os.path.join(run_dir, RUN_FILE),
        "model": os.path.join(run_dir, MODEL_FILE),
        "history": os.path.join(run_dir, HISTORY_FILE),
        "learning_curves": os.path.join(run_dir, CURVES_FILE),
        "logs": os.path.join(run_dir, LOG_DIR),
    }


def _check_run_dir(run_dir, config, overwrite=False):
    """Returns the previous run record, or None for a fresh folder; raises on conflicts.

    A record whose configuration differs from `config` in `epochs` alone
    is returned (`_check_extension` decides); with `overwrite`, any record
    is (the caller removes the run).
    """
    if not os.path.exists(run_dir):
        return None
    if not os.path.isdir(run_dir):
        v.fail(f"Expected `out` to be a folder; {run_dir} is a file.", "out", run_dir)
    record_path = os.path.join(run_dir, RUN_FILE)
    if not os.path.exists(record_path):
        # With `overwrite`, also what a kill during the removal of a run left.
        if any(not _first_moments(run_dir, name) and not (overwrite and name in _RUN_NAMES)
               for name in os.listdir(run_dir)):
            v.fail(f"The folder {run_dir} exists, is not empty and holds no cnnzoo run "
                   f"({RUN_FILE}); choose a new --out.", "out", run_dir)
        return None
    if overwrite:
        return {}  # whatever it holds: the run is removed
    try:
        with open(record_path) as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        v.fail(f"Could not read {record_path}: {error}.", "out", run_dir)
    old = record.get("config", {})
    # A run recorded before a recipe setting existed trained with its default.
    # (Every run recorded its optimizer and learning rate.)
    old = {**recipes.defaults(), **old} if old else old
    old_data, new_data = old.get("data"), config.get("data")
    if isinstance(old_data, dict) and "form" not in old_data and new_data.get("form") == "Dataset":
        # A run from a Dataset recorded before its content hash: it resumes unchecked, as before.
        old = {**old, "data": {**old_data, "form": "Dataset", "sha256": new_data["sha256"]}}
    keys = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
    if keys and keys != ["epochs"] and not _more_fine_tuning(old, config, keys):
        diffs = ", ".join(v.differences(old, config, keys))
        v.fail(f"The folder {run_dir} holds a run with a different configuration ({diffs}); "
               f"run the same command to resume it, --overwrite to start afresh, or choose "
               f"a new --out.", "out", run_dir)
    return {**record, "config": old}


def _fine_tune_epochs(config):
    return int((config.get("transfer") or {}).get("fine_tune_epochs") or 0)


def _more_fine_tuning(old, new, keys):
    """Whether two run configurations differ in their fine-tuning epochs alone (both > 0)."""
    if keys != ["transfer"] or not (_fine_tune_epochs(old) and _fine_tune_epochs(new)):
        return False
    a, b = dict(old["transfer"]), dict(new["transfer"])
    return {**a, "fine_tune_epochs": None} == {**b, "fine_tune_epochs": None}


def _check_extension(run_dir, record, epochs, recipe, *, fine, old_fine):
    """Refuses to extend the run of `record` where it would not be the same run.

    Extending is more `epochs` (the head's phase in a fine-tuning run, which
    would then come after its fine-tuning: refused) or more
    `fine_tune_epochs` (`fine`, the run's being `old_fine`). Returns
    `"stopped"` where early stopping ended the run (nothing to extend),
    None where it extends.
    """
    old = record["config"]["epochs"]
    if fine != old_fine:
        again = (f"use --overwrite to train {epochs} + {fine} epochs afresh, or a new --out")
        if fine < old_fine:
            v.fail(f"Expected `fine_tune_epochs` of at least the {old_fine} of the run in "
                   f"{run_dir} (more extends its fine-tuning); {again}.", "fine_tune_epochs",
                   fine)
        span = f"{old_fine} fine-tuning epoch{'s' if old_fine != 1 else ''}"
        name, value = "fine_tune_epochs", fine
    else:
        again = f"use --overwrite to train {epochs} epochs afresh, or a new --out"
        if epochs < old:
            v.fail(f"Expected `epochs` of at least the {old} of the run in {run_dir} (more "
                   f"extends it); {again}.", "epochs", epochs)
        if fine:
            v.fail(f"A fine-tuning run's epochs cannot be extended (its {old} head epochs "
                   f"came before its {fine} fine-tuning epochs; more "
                   f"fine_tune_epochs extend its fine-tuning); {again}.", "epochs", epochs)
        span, name, value = f"{old} epochs", "epochs", epochs
    if recipe.schedule != "constant":
        v.fail(f"Extending the run in {run_dir} would change its {recipe.schedule} "
               f"learning-rate schedule, which spans its {span}; {again}.", name, value)
    if record.get("status") == "complete" and record.get("stopped_early"):
        return "stopped"
    if record.get("status") == "complete" and _latest_state(run_dir) is None:
        v.fail(f"The run in {run_dir} kept no checkpoint to extend from (runs finished "
               f"before cnnzoo kept them have none); {again}.", "epochs", epochs)
    return None


# What a run writes in its folder (the names `_remove_run` removes).
_RUN_NAMES = (RUN_FILE, MODEL_FILE, HISTORY_FILE, CURVES_FILE, LOG_DIR, CHECKPOINT_DIR)


def _remove_run(run_dir):
    """Removes what a run wrote in `run_dir` (`overwrite`), its record last; nothing else.

    The checkpoints, TensorBoard's event files and the temporaries of
    atomic writes; folders only where that empties them. A kill on the way
    leaves the record, so the same command removes the rest.
    """
    _remove_temporaries(run_dir)
    for name in (MODEL_FILE, HISTORY_FILE, CURVES_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(run_dir, name))
    ckpt_dir = os.path.join(run_dir, CHECKPOINT_DIR)
    for path in _checkpoints(ckpt_dir):
        os.unlink(path)
    for folder, written in ((ckpt_dir, lambda n: n.startswith(".epoch-") and n.endswith(".tmp")),
                            (os.path.join(run_dir, LOG_DIR),
                             lambda n: n.startswith("events.out.tfevents."))):
        for root, dirs, files in os.walk(folder, topdown=False):
            for name in filter(written, files):
                os.unlink(os.path.join(root, name))
            with contextlib.suppress(OSError):
                os.rmdir(root)  # only where emptied
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(run_dir, RUN_FILE))


def _has_tensorflow():
    return v.module_installed("tensorflow")


def _first_moments(run_dir, name):
    """Whether `name` is what a run killed before its first `run.json` leaves behind.

    That is the empty checkpoint folder and the temporary of `run.json`
    (`_atomic.write_json` writes `.run.json.*.tmp`, then renames it).
    """
    path = os.path.join(run_dir, name)
    if name == CHECKPOINT_DIR:
        return os.path.isdir(path) and not os.listdir(path)
    return name.startswith(f".{RUN_FILE}.") and name.endswith(".tmp")


def _remove_temporaries(run_dir):
    """Removes the temporaries of writes a kill interrupted (never complete files)."""
    stems = [RUN_FILE, HISTORY_FILE, CURVES_FILE]
    for name in os.listdir(run_dir):
        if name.endswith(".tmp") and any(name.startswith(f".{stem}.") for stem in stems):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(run_dir, name))


def _write_history(path, history):
    keys = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(val) if isinstance(val, float) else val)
                         for k, val in row.items()})
    _atomic.write_text(path, buffer.getvalue())


def _history_lists(history):
    keys = [k for k in (history[0] if history else {}) if k != "epoch"]
    return {k: [row.get(k) for row in history] for k in keys}


def plot_learning_curves(history, path, *, best_epoch=None, title=None):
    """Saves loss and accuracy (train and validation) per epoch as a PNG, atomically.

    Args:
        history: a dict of lists (`loss`, `val_loss`, `accuracy`, `val_accuracy`;
            `phase` in a fine-tuning run, whose phase change is marked).
        path: the PNG to write.
        best_epoch: 1-based epoch to mark.
        title: the figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), dpi=100)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                ax.plot(epochs, history[key], marker="o", markersize=3, label=label)
        phases = history.get("phase") or []
        if 2 in phases:
            ax.axvline(phases.index(2) + 0.5, color="tab:red", linestyle=":", linewidth=1,
                       label="fine-tuning starts")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1,
                       label=f"best epoch ({best_epoch})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _atomic.write_bytes(path, buffer.getvalue())


def _finish(run_dir, net, dataset, state, run_record, batch_size, done, verbose,
            best_loaded=False):
    """Best weights back, test metrics, model.keras, plots, run.json; idempotent."""
    ckpt_dir = os.path.join(run_dir, CHECKPOINT_DIR)
    if not best_loaded:
        load_variables(net, os.path.join(ckpt_dir, state["best_file"]), model_only=True)
    history = state["history"]
    best_row = history[state["best_epoch"] - 1]
    test_metrics = None
    if len(dataset.y_test):
        test_metrics = net.evaluate(dataset.x_test, dataset.y_test, batch_size=batch_size,
                                    verbose=0, return_dict=True)
        test_metrics = {k: float(val) for k, val in test_metrics.items()}
    paths = run_record["paths"]
    _atomic.save_keras(net, paths["model"])
    _write_history(paths["history"], history)
    lists = _history_lists(history)
    plot_learning_curves(lists, paths["learning_curves"], best_epoch=state["best_epoch"],
                         title=f"{run_record['config']['model']} on {dataset.name}")
    run_record.update({
        "status": "complete",
        "finished": _now(),
        "epochs_run": state["epoch"],
        "stopped_early": bool(state["stopped"]),
        "best_epoch": state["best_epoch"],
        "metrics": {
            "val": {k[4:]: best_row[k] for k in best_row if k.startswith("val_")},
            "train": {k: best_row[k] for k in ("loss", "accuracy") if k in best_row},
            "test": test_metrics,
        },
        "history": lists,
    })
    _atomic.write_json(paths["run"], run_record)
    # The checkpoints stay (the last epoch's and the best one's): a longer --epochs extends the run.
    result = _result_from_record(run_dir, net, run_record, resumed_from=done)
    if verbose:
        print(summary_text(result))
    return result


def _result_from_record(run_dir, model, record, resumed_from=0):
    return TrainResult(
        run_dir=run_dir,
        model=model,
        history=record["history"],
        best_epoch=record["best_epoch"],
        epochs_run=record["epochs_run"],
        stopped_early=record["stopped_early"],
        test_metrics=record["metrics"]["test"],
        val_metrics=record["metrics"]["val"],
        config=record["config"],
        class_names=record["class_names"],
        paths=_paths(run_dir),  # where the folder is now: it may have been moved
        resumed_from=resumed_from,
    )


def _load_result(run_dir, record):
    model = keras.saving.load_model(_paths(run_dir)["model"],
                                    custom_objects=layers.custom_objects(), safe_mode=True)
    return _result_from_record(run_dir, model, record, resumed_from=record["epochs_run"])


def load_run(run_dir):
    """Reads a finished run folder: returns `(run_record, model_path)`.

    Raises:
        ValueError: the folder is not a finished cnnzoo run.
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    record_path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(record_path):
        v.fail(f"Expected a cnnzoo run folder holding {RUN_FILE}; {run_dir} has none.",
               "run_dir", run_dir)
    try:
        with open(record_path) as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        v.fail(f"Could not read {record_path} ({error}).", "run_dir", run_dir)
    if record.get("status") != "complete":
        v.fail(f"The run in {run_dir} has not finished; run the same `cnnzoo train` command "
               f"again to resume it.", "run_dir", run_dir)
    return record, os.path.join(run_dir, MODEL_FILE)


def summary_text(result):
    """The one-screen summary: what was trained, how well, and where everything went."""
    cfg = result.config
    test = result.test_metrics
    val = result.val_metrics
    lines = [
        "",
        f"Run {result.run_dir}",
        f"  model          {cfg['model']}  ({result.model.count_params():,} parameters)",
        f"  data           {cfg['data'].get('dataset')}  "
        f"({len(result.class_names)} classes: {', '.join(result.class_names[:10])}"
        f"{', ...' if len(result.class_names) > 10 else ''})",
        f"  epochs         {result.epochs_run} of {cfg['epochs']}"
        + (f" + {cfg['transfer']['fine_tune_epochs']} fine-tuning"
           if cfg.get("transfer", {}).get("fine_tune_epochs") else "") +
        f"{' (stopped early)' if result.stopped_early else ''}; best epoch {result.best_epoch}",
        f"  validation     loss {val.get('loss', float('nan')):.4f}  "
        f"accuracy {val.get('accuracy', float('nan')):.4f}",
    ]
    if test:
        lines.append(f"  test           loss {test['loss']:.4f}  accuracy {test['accuracy']:.4f}")
    p = result.paths
    lines += [
        "",
        f"  best model     {p['model']}",
        f"  record         {p['run']}",
        f"  history        {p['history']}",
        f"  curves         {p['learning_curves']}",
    ]
    if os.path.isdir(p["logs"]):
        lines.append(f"  TensorBoard    tensorboard --logdir {p['logs']}")
    lines += [
        f"  export         cnnzoo export {result.run_dir} --out EXPORT_DIR",
        "",
    ]
    return "\n".join(lines)


def _versions():
    import platform

    import cnnzoo

    versions = {"python": platform.python_version(), "cnnzoo": cnnzoo.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:
        pass
    if keras.backend.backend() == "jax":
        import jax

        versions["jax"] = jax.__version__
    return versions


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj):
    """Config values as JSON would give them back (tuples -> lists, callables -> names)."""
    return json.loads(json.dumps(obj, default=lambda o: getattr(o, "__name__", repr(o))))
