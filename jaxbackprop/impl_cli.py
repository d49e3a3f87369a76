"""``jaxbackprop check --impl FILE``: its options, its output, and ``--watch``.

The command takes a light path (:func:`parse`): ``jaxbackprop check --impl ...`` is parsed here,
without importing the rest of the command line (and JAX, optax, ...), so that a check starts in a
fraction of a second; the options are defined once, by :func:`add_check_options`, for both parsers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from jaxbackprop.cli_text import AppendOnce, OneLineParser, one_line

IMPL_HELP = (
    "check YOUR backward pass instead: a Python file defining any of the steps of `jaxbackprop exercise` "
    "(or a whole value_and_grad(params, batch, cfg)); each step is fed the reference's inputs and compared, "
    "output by output, naming the first step that leaves the reference. Exit 0: every step checked is yours "
    "and right; 1: one is wrong (or raises, hangs, or is the reference's); 5: INCOMPLETE, none wrong but some "
    "not implemented or not in your file; 2: the file cannot be checked"
)


def add_check_options(check: argparse.ArgumentParser, activations=None, heads=None) -> None:
    """Every option of ``check``; ``activations``/``heads`` are the choices (None: checked later)."""
    check.add_argument("--activation", action=AppendOnce, choices=activations, help="only this activation (repeatable)")
    check.add_argument("--head", action=AppendOnce, choices=heads, help="only this head (repeatable)")
    check.add_argument("--verbose", "-v", action="store_true", help="print the per-tensor table of every check")
    check.add_argument("--large", action="store_true", help="also check a V=20k, d=50 model along random directions")
    check.add_argument("--directions", type=_positive(int), default=8, help="random directions per large tensor")
    check.add_argument("--impl", metavar="FILE", help=IMPL_HELP)
    check.add_argument(
        "--step",
        action=AppendOnce,
        metavar="STEP",
        help="with --impl: only this step's rows (repeatable), e.g. linear_bwd",
    )
    check.add_argument(
        "--timeout",
        type=_positive(float),
        default=20.0,
        metavar="SECONDS",
        help="with --impl: the most one call of your code may take before it counts as an error (default 20)",
    )
    check.add_argument("--json", action="store_true", help="with --impl: print the report as JSON, for graders")
    check.add_argument(
        "--show",
        action=AppendOnce,
        metavar="TENSOR",
        help="with --impl: print expected vs yours for this tensor (e.g. dJ/dW or dW) at its worst case (repeatable)",
    )
    check.add_argument(
        "--watch", action="store_true", help="with --impl: check again each time the file is saved (Ctrl-C ends)"
    )
    check.add_argument(
        "--assembled",
        action="store_true",
        help="with --impl: also run your finished steps assembled into the whole pass (compiles JAX ops: slower)",
    )


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            what = "an integer >= 1" if kind is int else "a number > 0"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid int value: 'x'"
    return parse


def is_impl_check(argv: list) -> bool:
    """``check ... --impl FILE ...`` without ``--help``: the light path."""
    wants_help = any(a in ("-h", "--help") for a in argv)
    return bool(argv) and argv[0] == "check" and not wants_help and any(a.split("=")[0] == "--impl" for a in argv)


def parse(argv: list) -> argparse.Namespace:
    """The arguments of ``jaxbackprop check --impl ...``, parsed without the full command line."""
    parser = OneLineParser(prog="jaxbackprop")
    parser.add_argument("--debug", action="store_true")
    check = parser.add_subparsers(dest="command", required=True).add_parser("check", prog="jaxbackprop check")
    check.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    add_check_options(check)
    return parser.parse_args(argv)


def run(args) -> int:
    """``check --impl``: check once (or, ``--watch``, on every save); the exit code of the (last) check."""
    from jaxbackprop import impl_cache

    if args.large:
        raise ValueError("--large checks the project's own gradients at a large size; it does not combine with --impl")
    manifest = impl_cache.manifest()
    for option, given, allowed in (
        ("--activation", args.activation, manifest["activations"]),
        ("--head", args.head, manifest["heads"]),
        ("--step", args.step, manifest["steps"]),
    ):
        wrong = [g for g in given or () if g not in allowed]
        if wrong:
            raise ValueError(f"argument {option}: invalid choice: {wrong[0]!r} (choose from {', '.join(allowed)})")
    return watch(args) if args.watch else once(args)


def once(args, out=print) -> int:
    from jaxbackprop import impl_check

    report = impl_check.check_impl(
        args.impl,
        activations=args.activation,
        heads=args.head,
        steps=args.step,
        timeout=args.timeout,
        assembled=args.assembled,
    )
    out(report.as_json() if args.json else report.table())
    for tensor in args.show or ():
        out("\n" + report.show(tensor))
    return report.exit_code


def watch(args, *, poll: float = 0.2, runs: int | None = None, on_run=None, out=print) -> int:
    """Check the file, then again each time it changes; ``runs`` (tests) ends it after that many checks.

    A file that cannot be checked (a syntax error half-way through an edit) prints its one line and
    waits for the next save. Ctrl-C ends it, with the last check's exit code.
    """
    path, seen, code, done = Path(args.impl), None, 2, 0
    try:
        while runs is None or done < runs:
            stamp = _stamp(path)
            if stamp == seen:
                time.sleep(poll)
                continue
            seen, started = stamp, time.perf_counter()
            try:
                code = once(args, out)
            except ValueError as err:
                out(f"jaxbackprop: error: {one_line(str(err))}")
                code = 2
            done += 1
            out(f"-- checked in {time.perf_counter() - started:.2f} s; watching {path} for changes (Ctrl-C ends)")
            sys.stdout.flush()
            if on_run is not None:
                on_run(done)
    except KeyboardInterrupt:
        pass
    return code


def _stamp(path: Path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
