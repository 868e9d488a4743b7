"""The README and the docs site (docs/, mkdocs.yml) hold what they promise.

Every relative link resolves, every `--option` named exists in the command
line the parsers define, the cheap Python snippets run (a fenced ```python
block is executed unless its first line is `# not run`), and the site
builds with `mkdocs build --strict` (the `docs` packages are in the `test`
extra, so CI builds it).
"""

import contextlib
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.helpers import needs

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
TEXTS = [ROOT / "README.md"] + PAGES
# The site's pages that the build writes (docs/gen_pages.py), and where each is from.
GENERATED = {"cli.md": DOCS / "gen_pages.py"}
GENERATED.update({f"benchmarks/{p.name}": p for p in (ROOT / "benchmarks").glob("*.md")})
NOT_RUN = "# not run"
# Options named in the docs that are not cnnzoo's: mkdocs', and the misspelt
# one troubleshooting.md shows the error of.
NOT_CNNZOO_OPTIONS = {"--strict", "--max-trial"}


def _rel(path):
    return str(path.relative_to(ROOT))


def _links(text):
    """The relative link targets of a Markdown text, without their anchors."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # not in code blocks
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        yield target.split("#")[0]


@pytest.mark.parametrize("path", TEXTS, ids=_rel)
def test_relative_links_resolve(path):
    for target in _links(path.read_text()):
        resolved = (path.parent / target).resolve()
        if resolved.is_relative_to(DOCS):
            generated = GENERATED.get(str(resolved.relative_to(DOCS)))
            if generated is not None:
                assert generated.exists(), (path, target)
                continue
        assert resolved.exists(), f"{_rel(path)} links {target}, which does not exist"


def _snippets(path):
    return [block for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
            if not block.lstrip().startswith(NOT_RUN)]


def _cli_reference():
    sys.path.insert(0, str(DOCS))
    try:
        import gen_pages
    finally:
        sys.path.remove(str(DOCS))
    return gen_pages.cli_reference()


def test_cli_reference_comes_from_the_parsers():
    from cnnzoo import cli

    page = _cli_reference()
    for name in cli.COMMANDS:
        assert f"## cnnzoo {name}\n" in page
    # Each sub-command's own options, as its parser has them.
    assert "--worker-timeout" in page.split("## cnnzoo tune")[1].split("## cnnzoo")[0]
    # And the commands of a command: each experiment, with its own options.
    overfitting = page.split("### cnnzoo experiment overfitting")[1].split("## cnnzoo")[0]
    assert "--augment" in overfitting


def test_every_option_named_exists():
    page = _cli_reference()
    known = set(re.findall(r"--[a-z][a-z0-9-]*", page)) | NOT_CNNZOO_OPTIONS
    for path in TEXTS:
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", path.read_text()))
        assert not named - known, f"{_rel(path)} names {sorted(named - known)}, not cnnzoo's"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in TEXTS if _snippets(p)], ids=_rel)
def test_python_snippets_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the snippets write their runs
    namespace = {"__name__": "__snippet__"}
    for block in _snippets(path):
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            exec(compile(block, f"{_rel(path)} snippet", "exec"), namespace)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `mkdocs build --strict` writes it: the folder of its HTML."""
    needs("mkdocs", "mkdocs", "docs")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_site_builds_strictly(site):
    for page in ("index.html", "cli/index.html", "search/index.html", "api/tuning/index.html"):
        assert (site / page).exists(), page


def _model_rows(path):
    """The model table's rows of a page: (model names, total cell, trainable cell).

    A row "`vgg11`, `vgg13` (+ `_bn`)" stands for the batch-norm variants too.
    """
    for line in path.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 4:  # another table: the vocabulary's
            continue
        names = re.findall(r"`(\w+)`", cells[0])
        if "_bn" in names:
            names = [n for n in names if n != "_bn"]
            names += [f"{n}_bn" for n in names]
        yield names, cells[2], cells[3]


def _count_cell(counts):
    low, high = min(counts), max(counts)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


@pytest.mark.parametrize("path", [ROOT / "README.md", DOCS / "zoo.md"], ids=_rel)
def test_model_tables_match_the_registry(path):
    import cnnzoo

    rows = list(_model_rows(path))
    assert sorted(n for names, _, _ in rows for n in names) == sorted(cnnzoo.list_models())
    for names, total, trainable in rows:
        infos = [cnnzoo.model_info(n) for n in names]
        assert total == _count_cell([i["params"] for i in infos]), names
        assert trainable == _count_cell([i["trainable_params"] for i in infos]), names
