"""The project's own promises: the README's commands and what CI runs."""

import configparser
import pathlib
import re
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_two_commands():
    install_and_run, install_and_test = _readme_commands()
    assert install_and_run.startswith("pip install ") and "cnnzoo tune" in install_and_run
    assert '".[test]"' in install_and_test and "pytest" in install_and_test


def _commands(path):
    """The script's command lines: not comments, `set` or `cd`."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]


def _readme_torch_command():
    text = (ROOT / "README.md").read_text()
    (command,) = [c for c in re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
                  if "KERAS_BACKEND=torch" in c]
    return command.strip()


def test_ci_runs_the_readme_test_commands_then_the_floors():
    torch = _readme_torch_command()
    assert _commands(ROOT / ".ci" / "run") == ["ci/install-chromium",
                                              _readme_commands()[1].strip(), torch,
                                              "ci/floor-run"]
    # PyTorch named at a release of the torch extra (a range would take a CUDA build).
    pinned, rest = re.fullmatch(r"pip install torch==(\S+) (-e \S+) && "
                                r"KERAS_BACKEND=torch pytest -m multibackend", torch).groups()
    assert rest == '-e ".[test,torch]"'
    (extra,) = _setup_requirements()[1]["torch"]
    assert extra.specifier.contains(pinned), (str(extra), pinned)
    floor = "\n".join(_commands(ROOT / "ci" / "floor-run"))
    assert 'pip" install -q -e ".[test]" -c ci/floor-constraints.txt' in floor
    for step in ("pytest -m multibackend", '"$cnnzoo" tune', '"$cnnzoo" train',
                 '"$cnnzoo" export', '"$cnnzoo" verify --quick'):
        assert step in floor


def _setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _parse(text):
    """The requirements of a setup.cfg list, one a line, comments left out."""
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line]


def _setup_requirements():
    """setup.cfg's install_requires (by name), and every requirement extras included."""
    config = _setup_cfg()
    required = {req.name: req for req in _parse(config["options"]["install_requires"])}
    everything = {}
    for text in [config["options"]["install_requires"],
                 *config["options.extras_require"].values()]:
        for req in _parse(text):
            everything.setdefault(req.name, []).append(req)
    return required, everything


def test_the_test_extra_has_the_docs_extra():
    # CI installs only the test extra, and tests/test_docs.py builds the site strictly.
    extras = _setup_cfg()["options.extras_require"]
    test = {str(req) for req in _parse(extras["test"])}
    assert {str(req) for req in _parse(extras["docs"])} <= test


def _floor(requirement):
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return floors[0] if floors else None


def test_floor_constraints_pin_setup_cfgs_floors():
    pins = {}
    for line in (ROOT / "ci" / "floor-constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip()] = Version(version.strip())
    required, everything = _setup_requirements()
    # Every floor of the install is pinned, at that release (2.16 -> 2.16.x).
    for name, req in required.items():
        floor = _floor(req)
        if floor is not None:
            assert name in pins, f"setup.cfg's floor {req} is not in ci/floor-constraints.txt"
            n = len(floor.release)
            assert pins[name].release[:n] == floor.release, (req, str(pins[name]))
    # Every pin is of a declared requirement and within its range (ceilings too).
    for name, version in pins.items():
        assert name in everything, f"ci/floor-constraints.txt pins {name}, not in setup.cfg"
        for req in everything[name]:
            assert req.specifier.contains(version, prereleases=True), (str(req), str(version))
    # The floors have ceilings, where cnnzoo reaches into internals.
    for name in ("keras", "tensorflow", "keras-tuner", "numpy"):
        assert any(s.operator == "<" for s in required[name].specifier), required[name]


def test_an_absent_extra_skips_with_its_install_command_unless_ci_has_it(monkeypatch):
    from tests import helpers

    monkeypatch.setattr(helpers.v, "module_installed", lambda name: False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install 'cnnzoo\[torch\]'"):
        helpers.needs("torch", "torch", "torch")  # no extra of CI's environment
    with pytest.raises(pytest.fail.Exception, match=r"jax is missing, and CI's environment "
                                                    r"has it: pip install 'cnnzoo\[jax\]'"):
        helpers.needs("jax", "jax", "jax")
    # keras-hub is in the test extra from Python 3.11 only (the floor run goes without).
    on_311 = sys.version_info >= (3, 11)
    with pytest.raises(pytest.fail.Exception if on_311 else pytest.skip.Exception,
                       match=r"pip install 'keras-hub>=0\.32'"):
        helpers.needs("keras_hub", "keras-hub", "keras-hub>=0.32")
