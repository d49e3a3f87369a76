"""The command line's one-line errors, importable without JAX (``check --impl`` parses its options light)."""

from __future__ import annotations

import argparse


def one_line(text: str) -> str:
    """``text`` with its lines joined by single spaces (an error is one line on stderr)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``jaxbackprop train: error: argument --window: ...``.

    The usage argparse prints first would bury the error under train's 30 options.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


class AppendOnce(argparse.Action):
    """``action=AppendOnce`` that refuses a value given twice: a sweep would train it twice.

    The values are compared as parsed, so ``--learning-rate 0.1 --learning-rate 1e-1`` is a repeat.
    """

    def __call__(self, parser, namespace, value, option_string=None):
        values = list(getattr(namespace, self.dest) or [])
        if value in values:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            raise argparse.ArgumentError(self, f"{shown} is given twice (each value runs once)")
        setattr(namespace, self.dest, [*values, value])
