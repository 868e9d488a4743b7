"""docs/adding-a-model.md holds: one model file registers a family, and the rest follows.

A throwaway family is written to a temporary module, the way the checklist
says, and loaded before the test session of a fresh pytest process (so this
process's registry stays as it is). That process then finds it listed and
described, runs every parametrized model and registry test on it, and
searches its dropout rates with `tuning.ZooHyperModel`.
"""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The model file, as a contributor would write it (docs/adding-a-model.md).
TOY_MODEL = '''
"""A throwaway family: two conv-ReLU-pool stages and a small dense head."""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import min_input_size, register_model

FILTERS = (4, 8)
DENSE_UNITS = 16


@register_model(
    family="toy",
    paper="A throwaway family for the registry's own test",
    default_input_shape=(8, 8, 1),
    default_num_classes=10,
    min_input_size=min_input_size([(2, 2, "valid")] * len(FILTERS)),
    stages=len(FILTERS),
    params=1_034,
    reference="the same layers as a hand-written keras.Sequential: 1,034",
    dropout_rate=0.5,
    dropout_placement="0.5 after the hidden dense layer's ReLU",
    block_dropout_layers=[1] * len(FILTERS),
    head_dropout_layers=1,
)
def toy_net(cfg):
    """Toy net: two conv-ReLU-pool stages, a dense-ReLU-dropout head."""
    blocks = Blocks(cfg, kernel_initializer="he_uniform")
    inputs = blocks.inputs()
    x = inputs
    for stage, filters in enumerate(FILTERS):
        x = blocks.conv_block(x, filters, 3, f"block{stage + 1}",
                              dropout_rate=blocks.stage_rate(stage), pool="max")
    x = blocks.flatten_head(x, [DENSE_UNITS])
    return blocks.model(inputs, x)
'''

# The import that `cnnzoo/models/__init__.py` would hold, as a pytest plugin.
PLUGIN = "import toy_zoo  # noqa: F401  (registration)\n"

SEARCH_TEST = '''
import json

import keras_tuner as kt
import numpy as np

import cnnzoo
from cnnzoo import cli
from tuning import ZooHyperModel


def test_listed_and_described(capsys):
    assert "toy_net" in cnnzoo.list_models() and cnnzoo.list_models("toy*") == ["toy_net"]
    assert cli.main(["list", "toy*", "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert (info["family"], info["params"]) == ("toy", 1034)
    assert info["description"] == "Toy net: two conv-ReLU-pool stages, a dense-ReLU-dropout head."


def test_searchable(tmp_path):
    hypermodel = ZooHyperModel("toy_net", input_shape=(8, 8, 1), num_classes=3)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert model.output_shape == (None, 3)
    # The registry's default space: the head's paper rate inside its range.
    assert hp.values["dropout_rate"] == 0.5
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 24)
    tuner = kt.RandomSearch(hypermodel, objective="val_accuracy", max_trials=1,
                            directory=str(tmp_path), project_name="toy", seed=0)
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=8, verbose=0)
    (trial,) = tuner.oracle.get_best_trials(1)
    assert trial.status == "COMPLETED" and trial.score is not None
'''


def test_a_family_in_one_module_is_listed_built_tested_and_searchable(tmp_path):
    (tmp_path / "toy_zoo.py").write_text(TOY_MODEL)
    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    (tmp_path / "test_toy_search.py").write_text(textwrap.dedent(SEARCH_TEST))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "toy_plugin", "-p", "no:cacheprovider",
         "-p", "no:randomly", "-q", "-rA", "-W", "ignore", "-k", "toy_net or toy_search",
         "tests/test_models.py", "tests/test_registry.py", str(tmp_path / "test_toy_search.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    passed = set(re.findall(r"^PASSED (\S+)", out, flags=re.M))
    # Every test parametrized over `list_models()` ran on the new family.
    for test in ("test_builds_at_minimum_and_predicts_probabilities",
                 "test_minimum_input_leaves_one_whole_pixel",
                 "test_activation_knob_reaches_every_block",
                 "test_dropout_knobs_number_rates_and_stages",
                 "test_drop_path_count_and_linear_rates",
                 "test_keras_save_and_reload_safe_mode",
                 "test_one_training_step_without_nan",
                 "test_canonical_config_parameter_counts_and_defaults",
                 "test_below_minimum_input_is_a_clear_error"):
        assert f"tests/test_models.py::{test}[toy_net]" in passed, (test, sorted(passed))
    for test in ("test_model_info_fields", "test_per_stage_list_of_the_wrong_length",
                 "test_unsupported_keyword_names_the_supported_ones",
                 "test_drop_path_only_for_residual_families"):
        assert f"tests/test_registry.py::{test}[toy_net]" in passed, (test, sorted(passed))
    # (pytest names a file outside its root by the test alone.)
    assert {"test_listed_and_described", "test_searchable"} <= \
        {p.rsplit("::", 1)[-1] for p in passed}
