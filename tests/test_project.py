"""The project's own promises: the README's commands and what CI runs."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_two_commands():
    install_and_run, install_and_test = _readme_commands()
    assert install_and_run.startswith("pip install ") and "cnnzoo tune" in install_and_run
    assert '".[test]"' in install_and_test and "pytest" in install_and_test


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == _readme_commands()[1].strip()
