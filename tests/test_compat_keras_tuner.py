"""The Keras Tuner internals the search relies on are what `tuning._compat_keras_tuner` expects."""

import keras_tuner as kt
import pytest

from tuning import _compat_keras_tuner as compat


@pytest.mark.parametrize("name", sorted(compat.CONTRACTS))
def test_the_installed_keras_tuner_keeps_each_contract(name):
    compat.CONTRACTS[name]()


def test_a_changed_internal_fails_naming_it_and_the_version(monkeypatch):
    monkeypatch.delattr(kt.Oracle, "_get_oracle_fname")
    with pytest.raises(compat.KerasTunerChangedError,
                       match=rf"Oracle._get_oracle_fname.*keras-tuner {compat.version()}"):
        compat.CONTRACTS["oracle"]()


def test_a_hook_keras_tuner_stops_calling_breaks_its_contract(monkeypatch):
    # A release whose `_try_build` no longer builds through `_build_hypermodel`
    # would bypass the tuner's build hook silently: the contract tells.
    def try_build(self, hp):
        return self.hypermodel.build(hp)

    monkeypatch.setattr(kt.Tuner, "_try_build", try_build)
    monkeypatch.setattr(kt.Tuner, "load_model", try_build)
    with pytest.raises(compat.KerasTunerChangedError, match="_build_hypermodel"):
        compat.CONTRACTS["tuner"]()


def test_the_hooks_route_to_public_names():
    calls = []

    class Base:
        def _save_trial(self, trial):
            calls.append(("saved", trial))

        def _build_hypermodel(self, hp):
            return ("built", hp)

    class Oracle(compat.SaveTrialHook, Base):
        def write_trial(self, trial):
            calls.append(("write", trial))
            super().write_trial(trial)

    class Tuner(compat.BuildHook, Base):
        def build_trial(self, hp, build):
            calls.append(("build", hp))
            return build(hp)

    Oracle()._save_trial(1)
    assert Tuner()._build_hypermodel(2) == ("built", 2)
    assert calls == [("write", 1), ("saved", 1), ("build", 2)]
