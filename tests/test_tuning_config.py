"""`SearchConfig`: the command line, `search()`, `search.json` and the card all derive from it."""

import argparse
import dataclasses
import inspect

import pytest

from cnnzoo import recipe

import tuning
from tuning import config
from tuning.config import SearchConfig


def _parser():
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser


def test_the_command_line_defaults_are_the_configs():
    args = _parser().parse_args([])
    assert config.from_arguments(args) == SearchConfig()
    # Every setting on the command line has an option, under its own name.
    parser = _parser()
    for f in dataclasses.fields(SearchConfig):
        if f.metadata["cli"] is not None:
            assert parser.get_default(f.name) == f.default, f.name


def test_command_line_values_become_the_config():
    args = _parser().parse_args(["--max-trials", "4", "--no-export", "--worker-timeout", "0",
                                 "--jit", "off", "--per-stage", "--search-activation",
                                 "--image-size", "8,16"])
    settings = config.from_arguments(args)
    assert (settings.max_trials, settings.export, settings.worker_timeout, settings.jit) == \
        (4, False, None, False)
    assert settings.image_size == (8, 16)
    assert settings.hypermodel_kwargs == {"per_stage": True, "activation": True}


def test_search_takes_every_setting_as_a_keyword_and_the_objects():
    params = inspect.signature(tuning.search).parameters
    names = [f.name for f in dataclasses.fields(SearchConfig)]
    assert set(params) == set(names) | set(config.OBJECTS)
    assert list(params)[:2] == ["model", "data"]  # positional too
    assert all(params[n].default == SearchConfig.__dataclass_fields__[n].default
               for n in names)
    for name in names:
        assert f"        {name}: " in tuning.search.__doc__, name
    with pytest.raises(TypeError, match="bogus"):
        tuning.search(bogus=1)


def test_values_are_checked_where_they_enter(tmp_path):
    with pytest.raises(ValueError, match="Received: max_trials=0"):
        SearchConfig(max_trials=0)
    with pytest.raises(ValueError, match="Received: jit='yes'"):
        SearchConfig(jit="yes")
    checked = SearchConfig(out=tmp_path / "x", threads="2", seed=3)
    assert checked.out == str(tmp_path / "x") and checked.threads == 2


def test_what_a_search_records_and_compares(tmp_path):
    settings = SearchConfig(image_size=(8, 16), data=str(tmp_path))
    recorded = settings.recorded()
    assert set(recorded) == set(config.identity_fields()) | {"max_trials"}
    assert recorded["image_size"] == [8, 16]  # JSON-ready
    assert recorded["data"] == str(tmp_path)
    # max_trials is recorded but may grow: a larger budget extends the search.
    assert "max_trials" not in config.identity_fields()
    assert {"model", "data", "seed", "epochs", "precision"} <= set(config.identity_fields())
    # Every training-recipe setting too: each changes what a trial trains.
    assert set(config.card_fields()) == {"tuner", "objective", "seed", "epochs", "max_trials",
                                         "precision", "weights", "fine_tune_epochs", "unfreeze",
                                         "fine_tune_learning_rate", *recipe.defaults()}
    assert set(recipe.defaults()) <= set(config.identity_fields())


def test_the_repr_describes_data_in_memory():
    import numpy as np

    x, y = np.zeros((50, 8, 8, 1), "float32"), np.zeros((50,), "int64")
    text = repr(SearchConfig(data=(x, y), max_trials=3))
    assert "data=(ndarray(shape=(50, 8, 8, 1), dtype=float32), ndarray(shape=(50,), " \
           "dtype=int64))" in text
    assert "max_trials=3" in text and "0., 0." not in text and len(text) < 3000
