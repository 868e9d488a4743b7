"""`cnnzoo bench`: run the benchmark suite (see `cnnzoo.bench`).

Prints the results table; `--json PATH` and `--markdown PATH` also write
it (atomically). `benchmarks/RESULTS.md` is made by
`cnnzoo bench --quick --markdown benchmarks/RESULTS.md`; what an existing
Markdown file holds from `cnnzoo.bench.KEEP_MARKER` on (its GPU section) is
kept below the new table.
"""

import os

from cnnzoo import _validation as v

# The names, repeated here so that `--help` needs no import of the suite.
NAMES = ("startup", "throughput", "implementation", "flops", "precision", "serving", "search",
         "transfer")
# `cnnzoo.bench.search.CASES`, repeated for the same reason.
SEARCH_CASES = ("resnet18",)


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="Small sizes: the whole suite in a few minutes on 2 cores.")
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"Run only this benchmark (repeatable): {', '.join(NAMES)}.")
    parser.add_argument("--search-case", choices=SEARCH_CASES, default=None, metavar="NAME",
                        help="With --only search: run this named case instead of the default "
                             f"search ({', '.join(SEARCH_CASES)}: ResNet-18 on shapes at "
                             "32x32, 4 trials x 3 epochs, with where each search's time "
                             "goes).")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="Also write the results as JSON.")
    parser.add_argument("--markdown", metavar="PATH", default=None,
                        help="Also write the results table as Markdown (RESULTS.md).")


def run(args):
    # Checked before the suite runs (minutes), not when its results are written.
    for name in ("json", "markdown"):
        if getattr(args, name) is not None:
            v.check_output_file(name, getattr(args, name))
    from cnnzoo import _atomic, bench

    case = args.search_case
    results = bench.run_suite(only=args.only, quick=args.quick, search_case=case)
    command = "cnnzoo bench" + (" --quick" if args.quick else "")
    command += "".join(f" --only {n}" for n in args.only or [])
    if case is not None:
        command += f" --search-case {case}"
    if args.json:
        command += f" --json {args.json}"
    if args.markdown:
        command += f" --markdown {args.markdown}"
    text = bench.to_markdown(results, command=command)
    print(text)
    if args.json:
        _atomic.write_json(args.json, results)
        print(f"JSON: {args.json}")
    if args.markdown:
        previous = None
        if os.path.isfile(args.markdown):
            with open(args.markdown, encoding="utf-8") as f:
                previous = f.read()
        _atomic.write_text(args.markdown, bench.with_kept_tail(text, previous))
        print(f"Markdown: {args.markdown}")
    return 0
