"""The sub-commands of `cnnzoo` (see `cnnzoo.cli`), and what they share.

argparse answers a value that an option's `type=` or `choices=` rejects
with a message of its own ("invalid int value: 'x'"), not the project's.
Every parser of the command line is a `Parser`, which takes each option's
`type=` conversion and `choices` away from argparse as the option is added;
`cnnzoo.cli` calls `convert_types(args)` before the command runs, which
converts and checks those values instead: a bad one is `cnnzoo NAME: error:
Expected ... Received: name='x'` (with a "Did you mean" for a near miss of
a choice). Only argparse's public API is used: the actions `add_argument`
and `add_subparsers` return, and parser defaults.
"""

import argparse

from cnnzoo import _validation as v

# The defaults that carry each parser's deferred conversions: one key per
# parser (`_deferred_types:<prog>`), so that a sub-command's parser, whose
# defaults argparse merges over its parents', keeps theirs too.
_DEFERRED = "_deferred_types"


class Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose options are converted by `convert_types`.

    Help and usage do not change. Positional arguments (and sub-commands)
    are left to argparse. `subcommands` is the action of
    `add_subparsers()` (`None` without sub-commands), whose `choices` map
    each name to its parser.
    """

    subcommands = None

    def __init__(self, *args, **kwargs):
        # Options are exact: `--max-trial 3` is an error, not `--max-trials 3`
        # (argparse's abbreviations would also change meaning as options are added).
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and (action.type is not None or action.choices is not None):
            if action.metavar is None and action.choices is not None:
                action.metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
            key = f"{_DEFERRED}:{self.prog}"
            deferred = dict(self.get_default(key) or {})
            deferred[action.dest] = (action.type, action.choices)
            self.set_defaults(**{key: deferred})
            action.type = None
            action.choices = None
        return action

    def add_subparsers(self, **kwargs):
        self.subcommands = super().add_subparsers(**kwargs)
        return self.subcommands


def check_subcommands(parser, argv):
    """Checks the sub-command names in `argv` with the project's error, before argparse.

    Follows `argv`'s words that are not options down the parsers'
    sub-commands; an unknown name exits with code 2 and one line, `PROG:
    error: Expected ... Received: command='x'` (with a "Did you mean").
    The parsers that have sub-commands take no option values before them
    (only flags such as `--version` and `--help`).
    """
    for word in argv:
        if parser.subcommands is None:
            return
        if word.startswith("-"):
            continue
        choices = parser.subcommands.choices
        label = (parser.subcommands.metavar or parser.subcommands.dest).lower()
        try:
            v.check_choice(label, word, list(choices))
        except ValueError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        parser = choices[word]


def convert_types(args):
    """Converts the values `Parser` left as text, in place, with the project's errors."""
    deferred = {}
    for key, value in vars(args).items():
        if key.startswith(_DEFERRED):
            deferred.update(value)
    for name, (convert, choices) in deferred.items():
        value = getattr(args, name, None)
        if isinstance(value, list):  # action="append"
            setattr(args, name, [_convert(name, item, convert, choices) for item in value])
        elif isinstance(value, str):  # else unset: a default that argparse would not convert
            setattr(args, name, _convert(name, value, convert, choices))
    return args


def _convert(name, text, convert, choices):
    if not isinstance(text, str):
        return text
    if convert in (int, float):
        value = _parse_number(name, text, convert)
    elif convert is not None:
        value = convert(text)
    else:
        value = text
    if choices is not None:
        v.check_choice(name, value, list(choices))
    return value


def _parse_number(name, text, kind):
    from cnnzoo.commands.zoo import parse_number

    return parse_number(name, text, kind)
