"""The sub-commands of `cnnzoo` (see `cnnzoo.cli`), and what they share.

argparse answers a value that an option's `type=` or `choices=` rejects
with a message of its own ("invalid int value: 'x'"), not the project's.
`cnnzoo.cli` calls `defer_types(parser)` once a command has added its
options, and `convert_types(args)` before the command runs, which converts
and checks those values instead: a bad one is `cnnzoo NAME: error:
Expected ... Received: name='x'` (with a "Did you mean" for a near miss of
a choice).
"""

import argparse

from cnnzoo import _validation as v


def defer_types(parser, inherited=None):
    """Takes the options' `type=` conversions and `choices` away from argparse.

    The values stay text until `convert_types`; what each option needs is
    kept in the parser's defaults (a sub-command's parser, which argparse
    lets override them, also keeps its parents'). Help and usage do not
    change. Positional arguments (and sub-commands) are left to argparse.
    """
    deferred = dict(inherited or {})
    subparsers = []
    for action in parser._actions:
        if isinstance(action.choices, dict) and all(
                isinstance(p, argparse.ArgumentParser) for p in action.choices.values()):
            subparsers += action.choices.values()
            continue
        if not action.option_strings or (action.type is None and action.choices is None):
            continue
        if action.metavar is None and action.choices is not None:
            action.metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
        deferred[action.dest] = (action.type, action.choices)
        action.type = None
        action.choices = None
    parser.set_defaults(_deferred_types=deferred)
    for sub in subparsers:
        defer_types(sub, deferred)


def convert_types(args):
    """Converts the values `defer_types` left as text, in place, with the project's errors."""
    for name, (convert, choices) in getattr(args, "_deferred_types", {}).items():
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
