"""Writes the site's generated pages: the command-line reference and the benchmark results.

Run by the docs build (mkdocs-gen-files, `mkdocs.yml`); `cli_reference()`
is also what `tests/test_docs.py` checks. Nothing here is written by hand:
`cli.md` is each sub-command's `--help`, as `cnnzoo NAME --help` prints it,
and `benchmarks/NAME.md` are the results files under `benchmarks/` (written
by `cnnzoo bench --markdown`), copied so that the guides can link them.
"""

import os
import pathlib

# The results files the guides link as `benchmarks/NAME.md`.
BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def cli_reference():
    """Returns the command-line reference as Markdown.

    Returns:
        The page: `cnnzoo --help`, then one section per sub-command with its
        help text, in the order of `cnnzoo --help`.
    """
    # A fixed width, so that the page does not depend on the terminal.
    os.environ["COLUMNS"] = "90"
    from cnnzoo import cli

    lines = [
        "# Command line",
        "",
        "Generated from the parsers of `cnnzoo` when the site is built "
        "(`docs/gen_pages.py`); each section is what `cnnzoo NAME --help` prints.",
        "",
        "```text",
        cli._parser().format_help().rstrip(),
        "```",
    ]
    for name in cli.COMMANDS:
        parser = cli._parser(name).subcommands.choices[name]
        lines += _section(f"cnnzoo {name}", parser, "##")
        # A command with commands of its own (`cnnzoo experiment NAME`).
        for sub_name, sub_parser in (parser.subcommands.choices if parser.subcommands else {}).items():
            lines += _section(f"cnnzoo {name} {sub_name}", sub_parser, "###")
    return "\n".join(lines) + "\n"


def _section(title, parser, level):
    return ["", f"{level} {title}", "", "```text", parser.format_help().rstrip(), "```"]


def write_pages():
    """Writes `cli.md` and `benchmarks/*.md` into the site being built."""
    import mkdocs_gen_files

    with mkdocs_gen_files.open("cli.md", "w") as page:
        page.write(cli_reference())
    for results in sorted(BENCHMARKS.glob("*.md")):
        with mkdocs_gen_files.open(f"benchmarks/{results.name}", "w") as page:
            page.write(results.read_text())


# mkdocs-gen-files runs this file with `runpy.run_path` (name "<run_path>").
if __name__ in ("__main__", "<run_path>"):
    write_pages()
