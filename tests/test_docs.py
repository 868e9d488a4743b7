"""The README and the docs site (docs/, mkdocs.yml) hold what they promise.

Every relative link resolves, every `--option` named exists in the command
line the parsers define, the cheap Python snippets run (a fenced ```python
block is executed unless its first line is `# not run`), and the site
builds with `mkdocs build --strict` (the `docs` packages are in the `test`
extra, so CI builds it).
"""

import contextlib
import functools
import http.server
import os
import pathlib
import re
import subprocess
import sys
import threading

import pytest

from cnnzoo import _atomic
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


CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network: without the background-networking ones Chromium's
# own connections (updates, sync) are refused and it stalls.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
# Set to a path (docs/images/home.png), the browser test saves the home page there.
SCREENSHOT = "CNNZOO_DOCS_SCREENSHOT"


@pytest.fixture(scope="module")
def served(site):
    """The built site served on localhost (as `mkdocs serve` would): its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A page of headless Chromium (Debian's, driven by Playwright), 1280x800."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium: apt-get install -y chromium (what ci/install-chromium does)")
    sync_api = needs("playwright.sync_api", "playwright", "test")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()


def _visit(page, url):
    """Opens `url` in `page`: the ids of its elements, its links, its images (src, loaded)."""
    errors = []

    def record(error):
        errors.append(str(error))

    page.on("pageerror", record)
    try:
        response = page.goto(url, wait_until="load")
    finally:
        page.remove_listener("pageerror", record)
    assert response.ok, f"{url}: HTTP {response.status}"
    assert not errors, f"{url}: {errors}"
    ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])")
    return ids, links, images


def _check_renders(page, url, heading, nav_titles):
    _visit(page, url)
    # The page's own heading (less the permalink's pilcrow).
    assert page.locator("article h1").first.inner_text().rstrip("¶ \n") == heading
    # The theme's CSS applied (a sticky header), its navigation shown with every entry.
    header = "getComputedStyle(document.querySelector('.md-header')).position"
    assert page.evaluate(header) == "sticky"
    nav = page.locator("nav.md-nav--primary").first
    assert nav.is_visible()
    shown = {t.strip() for t in nav.locator("a.md-nav__link, label.md-nav__link").all_inner_texts()}
    assert set(nav_titles) <= shown, set(nav_titles) - shown


def _nav_titles(entries):
    for entry in entries:
        for title, target in entry.items():
            yield title
            if isinstance(target, list):
                yield from _nav_titles(target)


def test_site_reads_in_a_browser(browser, served):
    import yaml

    titles = list(_nav_titles(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    outside = []  # the site asks nothing of other hosts (mkdocs.yml: font: false)
    browser.on("request", lambda r: None if r.url.startswith(served) else outside.append(r.url))
    # The home page, a guide and an API page render, with their navigation.
    _check_renders(browser, served, "cnnzoo", titles)
    if os.environ.get(SCREENSHOT):
        _atomic.write_bytes(os.environ[SCREENSHOT], browser.screenshot())
    _check_renders(browser, served + "training/", "Training, export and prediction", titles)
    _check_renders(browser, served + "api/cnnzoo/", "cnnzoo", titles)
    assert browser.locator("[id='cnnzoo.create_model']").count() == 1  # a documented function
    # The search finds a word of the guides.
    browser.locator("input.md-search__input").press_sequentially("dropout", delay=20)
    browser.wait_for_selector(".md-search-result__item")

    # Every page a reader can reach from the home page: every internal link (its
    # anchor too) resolves and every image loads.
    pages, links, shown = {}, {}, set()
    queue = [served]
    while queue:
        url = queue.pop()
        if url in pages:
            continue
        response = browser.request.get(url)
        assert response.ok, f"{links.get(url)} links {url}: HTTP {response.status}"
        pages[url] = None  # not HTML: resolves, nothing more to check
        if response.headers.get("content-type", "").startswith("text/html"):
            pages[url], on_page, images = _visit(browser, url)
            for src, loaded in images:
                assert loaded, f"{url} shows {src}, which does not load"
                shown.add(src.rsplit("/", 1)[-1])
            for link in on_page:
                if link.startswith(served):
                    links.setdefault(link, url)
                    links.setdefault(link.split("#")[0], url)
                    queue.append(link.split("#")[0])
    for link, page in links.items():
        target, _, anchor = link.partition("#")
        if anchor and pages[target] is not None:
            assert anchor in pages[target], f"{page} links {link}: no such anchor"
    assert len(pages) > len(titles)
    # Every committed image is on a page, or linked from one (the screenshot).
    shown |= {link.rsplit("/", 1)[-1] for link in links}
    assert {p.name for p in (DOCS / "images").iterdir()} <= shown
    assert not outside, outside


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
