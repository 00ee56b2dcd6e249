"""How every ``python -m minarmd...`` command reports a user's mistake: one ``error:`` line, exit status 2.

    def main(argv=None):
        return run_cli(build_parser(), argv, run)   # run(args) does the work

A user error is a ``ValueError`` (every check in minarmd raises one, naming the flag or file and the
fix; ``CheckpointError`` and the data errors are ValueErrors) or an ``OSError`` (a missing, unreadable
or unwritable file). It is printed as ``error: <message>`` on stderr and the command exits with status
2, argparse's own status for a bad flag, so scripts can tell "you asked for something wrong" (2) from
"it crashed" (1, with a traceback) and "interrupted" (130, Ctrl-C). ``--debug`` shows the traceback of
a user error too. Anything else is a bug and raises as usual.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["USER_ERRORS", "EXIT_USER_ERROR", "EXIT_INTERRUPTED", "add_debug_flag", "run_cli"]

USER_ERRORS = (ValueError, OSError)  # our own checks; missing / unwritable files
EXIT_USER_ERROR = 2  # argparse's status for a bad flag: the same for every user error
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for Ctrl-C


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--debug`` (show the traceback of a user error) unless the parser has it."""
    if not any("--debug" in a.option_strings for a in parser._actions):
        parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def run_cli(parser: argparse.ArgumentParser, argv, body):
    """Parse ``argv`` and return ``body(args)``; a user error becomes ``error: ...`` and exit status 2."""
    args = add_debug_flag(parser).parse_args(argv)
    try:
        return body(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        raise SystemExit(EXIT_INTERRUPTED)
    except USER_ERRORS as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the message's layout
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
