"""The ``jaxbackprop`` command: thin wrappers that parse arguments, call the library, print."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time


def _check(args) -> int:
    from jaxbackprop import gradcheck
    from jaxbackprop.nonlinearities import ACTIVATIONS

    activations = args.activation or ACTIVATIONS
    heads = args.head or ("softmax", "score")
    print(
        f"gradient check: {len(activations)} activations x {len(heads)} heads x {len(gradcheck.MATRIX_CASES)} cases, "
        f"float64; tolerances: manual~autodiff <= {gradcheck.MANUAL_VS_AUTODIFF_RTOL:g}, "
        f"numeric <= {gradcheck.NUMERIC_RTOL:g} (relative)\n"
    )
    print(f"{'activation / head / case':<40} {'manual~autodiff':>16} {'numeric~manual':>15} {'numeric~autodiff':>17}  ok")
    worst: dict = {}
    failed = 0
    results = gradcheck.check_matrix(activations=activations, heads=heads, directions=args.directions)
    for result in results:
        _print_row(result)
        failed += not result.passed
        if args.verbose or not result.passed:
            print(result.table() + "\n")
        _track_worst(worst, result)
    if args.large:
        result = _large_check(args.directions)
        print(result.table() + "\n")
        failed += not result.passed
        _track_worst(worst, result)
    print("\nlargest errors per tensor over the whole matrix (max relative error, max absolute error):")
    print(f"{'tensor':<6} {'manual~autodiff':>22} {'numeric~manual':>22} {'numeric~autodiff':>22}")
    for name in sorted(worst):
        cells = "".join(f" {rel:>10.1e} {abs_:>10.1e} " for rel, abs_ in worst[name])
        print(f"{name:<6}{cells}")
    print(f"\n{'FAILED' if failed else 'PASSED'}: {failed} of the checks exceeded a tolerance")
    return 1 if failed else 0


def _print_row(result) -> None:
    cells = []
    for attr in ("manual_vs_autodiff", "numeric_vs_manual", "numeric_vs_autodiff"):
        t = max(result.tensors, key=lambda t: getattr(t, attr).max_rel)
        cells.append(f"{getattr(t, attr).max_rel:.1e} ({t.name})")
    print(f"{result.label:<40} {cells[0]:>16} {cells[1]:>15} {cells[2]:>17}  {'yes' if result.passed else 'NO'}")


def _track_worst(worst: dict, result) -> None:
    for t in result.tensors:
        comps = (t.manual_vs_autodiff, t.numeric_vs_manual, t.numeric_vs_autodiff)
        old = worst.get(t.name, [(0.0, 0.0)] * 3)
        worst[t.name] = [(max(o[0], c.max_rel), max(o[1], c.max_abs)) for o, c in zip(old, comps)]


def _large_check(directions: int):
    """A realistic size (V = 20,000, d = 50, H = 200, B = 64): random directions for E and W."""
    from jaxbackprop import gradcheck, model

    cfg = model.ModelConfig(vocab_size=20_000, embed_dim=50, window=5, hidden_dim=200, activation="tanh", l2=1e-3)
    batch, _ = gradcheck.case_batch("repeated words", 0, cfg, batch_size=64)
    label = "large: V=20000 d=50 H=200 B=64 tanh/softmax, repeated words"
    return gradcheck.check_gradients(gradcheck.check_params(0, cfg), batch, cfg, directions=directions, label=label)


def _graph_demo(args) -> int:
    from jaxbackprop import graph_demo

    print(graph_demo.demo_text())
    return 0


def _load_corpus(args):
    """Sentences of each split and pretrained vectors: the given files, or the embedded default."""
    from jaxbackprop import data, embeddings, synthetic

    if args.train is None:
        if args.dev or args.test:
            raise ValueError("--dev/--test need --train (without files the embedded synthetic corpus is used)")
        corpus = synthetic.synthetic_corpus(seed=0)
        pretrained = synthetic.synthetic_vectors() if args.embeddings is None else embeddings.read_embeddings(args.embeddings)
        print(f"no --train given: using the embedded synthetic corpus ({len(corpus['train'])} / {len(corpus['dev'])} / "
              f"{len(corpus['test'])} sentences) and its synthetic word vectors")  # fmt: skip
        return corpus["train"], corpus["dev"], corpus["test"], pretrained
    if args.dev is None:
        raise ValueError("--train needs --dev (the best epoch is chosen on dev F1)")
    train_sents = data.read_conll(args.train)
    tags = data.tags_from(train_sents)  # a dev/test tag outside them is reported at its file and line
    dev_sents = data.read_conll(args.dev, allowed_tags=tags)
    test_sents = data.read_conll(args.test, allowed_tags=tags) if args.test else None
    pretrained = embeddings.read_embeddings(args.embeddings) if args.embeddings else None
    return train_sents, dev_sents, test_sents, pretrained


LARGE_VOCAB = 100_000  # above this, a dense embedding update dominates the step on a CPU (BENCHMARKS.md)


def _train(args) -> int:

    from jaxbackprop import train

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(train.TrainConfig) if getattr(args, f.name, None) is not None}
    cfg = train.TrainConfig(**overrides)
    train_s, dev_s, test_s, pretrained = _load_corpus(args)
    prepared = train.prepare_for(cfg, train_s, dev_s, test_s, pretrained)
    if prepared.coverage:
        c = prepared.coverage
        print(f"pretrained vectors cover {c['found']} of {c['vocab_size']} vocabulary words ({c['fraction']:.1%})")
    if len(prepared.vocab) > LARGE_VOCAB and not cfg.sparse and cfg.embeddings_mode == "finetune":
        print(f"note: a vocabulary of {len(prepared.vocab):,} words -- the dense {cfg.optimizer} step reads and writes every row "
              f"of E (and its optimizer state) on every step; --sparse updates only the rows in the batch "
              f"(on Linux, GLIBC_TUNABLES=glibc.malloc.hugetlb=1 also speeds up large tables: see README)")  # fmt: skip
    run_dir = args.run_dir or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"{len(prepared.train.windows)} training windows, vocabulary {len(prepared.vocab)}, {len(prepared.tags)} tags -> {run_dir}")
    train.train_and_evaluate(cfg, prepared, run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def _evaluate(args) -> int:
    from jaxbackprop import data, train

    cfg, mcfg, vocab, tags, params = train.load_run(args.run)
    sents = data.read_conll(args.data, allowed_tags=tags)
    ds = data.make_windows(sents, vocab, data.make_tag_index(tags), mcfg.window)
    decoder = args.decode or cfg.decode
    result = train.evaluate(params, ds, tags, mcfg, decoder)
    versus = f", per-token argmax {result['argmax_f1']:.4f}" if decoder != "argmax" else ""
    print(f"{args.data}: entity F1 {result['f1']:.4f} (P {result['precision']:.4f} R {result['recall']:.4f}; "
          f"{decoder} decoding{versus}), "
          f"token accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")  # fmt: skip
    for t, s in sorted(result["per_type"].items()):
        print(f"  {t:<6} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  ({s['support']} entities)")
    return 0


def _predict(args) -> int:
    import numpy as np

    from jaxbackprop import data, train

    text = data.read_text(args.input) if args.input else None  # a wrong path fails before the run loads
    cfg, mcfg, vocab, tags, params = train.load_run(args.run)
    text = sys.stdin.read() if text is None else text
    sentences = [line.split() for line in text.splitlines() if line.strip()]
    if not sentences:
        return 0
    ds = data.windows_for_tokens(sentences, vocab, mcfg.window)
    pred, _ = train.predict_labels(params, ds, tags, mcfg, args.decode or cfg.decode)
    tag_arr = np.asarray(tags)
    out, start = [], 0
    for tokens in sentences:
        out += [f"{tok} {tag}" for tok, tag in zip(tokens, tag_arr[pred[start : start + len(tokens)]])] + [""]
        start += len(tokens)
    sys.stdout.write("\n".join(out))
    return 0


def _sweep(args) -> int:
    import itertools

    from jaxbackprop import sweep, train

    train_s, dev_s, test_s, pretrained = _load_corpus(args)
    base = train.TrainConfig(epochs=args.epochs, hidden_dim=args.hidden_dim, batch_size=args.batch_size)
    if args.quick:
        base = dataclasses.replace(base, epochs=1, hidden_dim=32, window=3, casing_dim=4)
        train_s, dev_s = train_s[:600], dev_s[:150]
    optimizers = args.optimizer or (("sgd", "adam") if args.quick else sweep.OPTIMIZERS)
    rates = args.learning_rate or ((1e-2, 1e-1) if args.quick else sweep.LEARNING_RATES)
    table = [{"optimizer": o, "learning_rate": lr, "schedule": s, "l2": l2, "seed": seed}
             for o, lr, s, l2, seed in itertools.product(optimizers, rates, args.schedule or ("constant",),
                                                         args.l2 or (0.0,), args.seed or (0,))]  # fmt: skip
    prepared = train.prepare_for(base, train_s, dev_s, None, pretrained)
    out = args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"sweep of {len(table)} configurations, {base.epochs} epoch(s) each -> {out}")
    rows = sweep.run_sweep(table, prepared, out, base=base, chunk=args.chunk)
    print(f"\n{'optimizer':<9} {'lr':>8} {'schedule':<9} {'l2':>7} {'seed':>4}  best dev F1  epoch  diverged")
    for r in rows:
        f1 = "-" if r["best_dev_f1"] is None else f"{r['best_dev_f1']:.4f}"
        print(f"{r['optimizer']:<9} {r['learning_rate']:>8.0e} {r['schedule']:<9} {r['l2']:>7g} {r['seed']:>4}  "
              f"{f1:>11}  {r['best_epoch'] or '-':>5}  {'yes' if r['diverged'] else 'no'}")  # fmt: skip
    print(f"results: {out}/results.csv, results.json, curves.png, heatmap.png")
    return 0


def _attribute_docs(cls) -> dict:
    """``{name: description}`` from the ``Attributes:`` section of a dataclass docstring."""
    docs, name = {}, None
    section = cls.__doc__.split("Attributes:", 1)[-1]
    for line in section.splitlines():
        head, sep, rest = line.strip().partition(": ")
        if sep and line.startswith(" " * 6) and not line.startswith(" " * 8):
            for part in head.split(", "):
                docs[part] = rest
            name = head
        elif name and line.strip():
            for part in name.split(", "):
                docs[part] += " " + line.strip()
    return docs


def _add_train_options(parser) -> None:

    from jaxbackprop import train
    from jaxbackprop.decode import DECODERS
    from jaxbackprop.nonlinearities import ACTIVATIONS

    defaults = train.TrainConfig()
    docs = _attribute_docs(train.TrainConfig)
    choices = {"grad": train.GRADS, "decode": DECODERS, "impl": train.IMPLS, "schedule": train.SCHEDULES, "embeddings_mode": train.EMBEDDING_MODES,
               "activation": ACTIVATIONS, "init": ("xavier", "normal", "zeros"), "optimizer": train.optimizer_names()}  # fmt: skip
    group = parser.add_argument_group("model and training (defaults: the best configuration found on CoNLL-2003)")
    for f in dataclasses.fields(train.TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = f"{docs.get(f.name, '')} (default: {default})"
        if isinstance(default, bool):
            group.add_argument(flag, action="store_true", default=None, help=text)
        elif f.name == "optimizer":  # too many choices for the usage line: the help lists them
            group.add_argument(flag, choices=choices[f.name], metavar="NAME", help=f"{text}; one of: {' '.join(choices[f.name])}")
        elif f.name in choices:
            group.add_argument(flag, choices=choices[f.name], help=text)
        else:  # a number, in the range TrainConfig checks
            kind = float if default is None else type(default)  # optional rates default to None
            group.add_argument(flag, type=_config_value(f.name, kind), help=text)


def _config_value(name: str, kind: type):
    """An argparse ``type`` for a TrainConfig field: ``kind(text)``, in the range TrainConfig checks.

    The range lives in ``TrainConfig.__post_init__`` alone; its message, which starts with the
    field's name, becomes ``argument --dropout: must be a number in [0, 1), got 1.5``.
    """
    from jaxbackprop import train

    def parse(text: str):
        value = kind(text)  # a ValueError here reads "invalid int value: 'x'"
        try:
            train.TrainConfig(**{name: value})
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(name + " ")) from None
        return value

    parse.__name__ = kind.__name__
    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


_positive_int.__name__ = "int"  # argparse's "invalid int value: 'x'"


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``jaxbackprop train: error: argument --window: ...``.

    The usage argparse prints first would bury the error under train's 30 options.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


DEBUG_HELP = "on an error, print the full traceback as well (also: environment variable JAXBACKPROP_DEBUG=1)"


def build_parser() -> argparse.ArgumentParser:
    from jaxbackprop import train
    from jaxbackprop.decode import DECODERS
    from jaxbackprop.nonlinearities import ACTIVATIONS

    parser = _Parser(
        prog="jaxbackprop",
        description="Backpropagation for the window-based NER classifier: hand-derived gradients, "
        "checked against jax.grad and numeric differences.",
        epilog="An error prints one line, 'jaxbackprop: error: <file>:<line>: <problem>' or the option and what it "
        "allows, and exits with 2 (1: `check` found a wrong gradient; 3: an internal error; 130: interrupted).",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # the same flag after the subcommand; SUPPRESS keeps a subcommand from resetting it to False
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
        parents=[debug],
        help="prove the hand-derived gradients: manual vs jax.grad vs numeric, every activation and head",
        description="Runs the gradient-check matrix (6 activations x 2 heads x [random windows, windows "
        "with repeated words and padding, batch of 1]) in float64 and prints, per check, the largest "
        "relative error of manual vs jax.grad and of both vs two-sided numeric differences. Exits 1 "
        "if any tensor exceeds its tolerance.",
    )
    check.add_argument("--activation", action="append", choices=ACTIVATIONS, help="only this activation (repeatable)")
    check.add_argument("--head", action="append", choices=("softmax", "score"), help="only this head (repeatable)")
    check.add_argument("--verbose", "-v", action="store_true", help="print the per-tensor table of every check")
    check.add_argument("--large", action="store_true", help="also check a V=20k, d=50 model along random directions")
    check.add_argument("--directions", type=_positive_int, default=8, help="random directions per large tensor (default 8)")
    check.set_defaults(func=_check)

    demo = sub.add_parser(
        "graph-demo",
        parents=[debug],
        help="the lecture's worked example f = (x + y) max(y, z) on the computation-graph engine",
        description="Runs f(x, y, z) = (x + y) * max(y, z) at x=1, y=2, z=0 forward and backward on "
        "jaxbackprop.graph and prints each edge's value, each node's upstream, local and downstream "
        "gradients, the wiggle check, and the three gradient-flow patterns.",
    )
    demo.set_defaults(func=_graph_demo)

    tr = sub.add_parser(
        "train",
        parents=[debug],
        help="train the window classifier (without files: on the embedded synthetic corpus)",
        description="Trains the window-based NER classifier with a jitted optax step, evaluates entity F1 "
        "on dev every epoch, keeps the best epoch, and reports test F1. Writes config.json, vocab.json, "
        "metrics.jsonl, checkpoint.npz, best.npz, learning_curve.png and summary.json into --run-dir. "
        "Field meanings: see jaxbackprop.train.TrainConfig.",
    )
    tr.add_argument("--train", help="training data (CoNLL: token ... tag per line, IOB1 or IOB2)")
    tr.add_argument("--dev", help="dev data, for choosing the best epoch")
    tr.add_argument("--test", help="test data, evaluated once with the best epoch")
    tr.add_argument("--embeddings", help="pretrained vectors, GloVe or word2vec text format")
    tr.add_argument("--run-dir", help="where the run's files go (default: runs/train-<time>)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --run-dir after its last finished epoch, with exactly "
                    "its recorded configuration (only --epochs may grow, where the schedule allows)")  # fmt: skip
    tr.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --run-dir")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_train_options(tr)
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", parents=[debug], help="entity F1 of a trained run on a CoNLL file",
                        description="Loads the best checkpoint of --run and prints entity-level P/R/F1 (CoNLL rules), "
                        "per-type scores and token accuracy on --data.")  # fmt: skip
    ev.add_argument("--run", required=True, help="a run directory written by `jaxbackprop train`")
    ev.add_argument("--data", required=True, help="a CoNLL file with gold tags")
    ev.add_argument("--decode", choices=DECODERS, help="how tags are read off the softmax (default: the run's --decode)")
    ev.set_defaults(func=_evaluate)

    sw = sub.add_parser(
        "sweep",
        parents=[debug],
        help="train a table of configurations (optimizer x learning rate x schedule x l2 x seed)",
        description="Trains every combination of the given optimizers, learning rates, schedules, L2 "
        "strengths and seeds; configurations that share shapes train together in one jitted, vmapped "
        "step. Writes results.csv/.json, curves.json, curves.png and heatmap.png to --out. Diverging "
        "configurations are recorded, never fatal. Without --train: the embedded synthetic corpus.",
    )
    sw.add_argument("--train", help="training data (CoNLL)")
    sw.add_argument("--dev", help="dev data (CoNLL)")
    sw.add_argument("--test", help=argparse.SUPPRESS)
    sw.add_argument("--embeddings", help="pretrained vectors, GloVe or word2vec text format")
    sw.add_argument("--out", help="output directory (default: runs/sweep-<time>)")
    sw.add_argument("--optimizer", action="append", choices=train.optimizer_names(), metavar="NAME",
                    help=f"optax optimizer (repeatable; default: sgd momentum adagrad rmsprop adam adamw), one of: "
                    f"{' '.join(train.optimizer_names())}")  # fmt: skip
    sw.add_argument("--learning-rate", action="append", type=_config_value("learning_rate", float),
                    help="repeatable (default: 1e-4 ... 1e0, powers of ten)")  # fmt: skip
    sw.add_argument("--schedule", action="append", choices=("constant", "step", "exponential", "cosine", "cyclic", "warmup_cosine"), help="repeatable (default: constant)")
    sw.add_argument("--l2", action="append", type=_config_value("l2", float), help="repeatable (default: 0)")
    sw.add_argument("--seed", action="append", type=_config_value("seed", int), help="repeatable (default: 0)")
    sw.add_argument("--epochs", type=_config_value("epochs", int), default=3, help="epochs per configuration (default: 3)")
    sw.add_argument("--hidden-dim", type=_config_value("hidden_dim", int), default=100, help="hidden units (default: 100)")
    sw.add_argument("--batch-size", type=_config_value("batch_size", int), default=128, help="windows per step (default: 128)")
    sw.add_argument("--chunk", type=_positive_int, help="configurations per vmapped program (default: chosen so it is never slower than sequential)")
    sw.add_argument("--quick", action="store_true", help="a tiny sweep (sgd, adam x 1e-2, 1e-1; 1 epoch; small model) in seconds")
    sw.set_defaults(func=_sweep)

    pr = sub.add_parser("predict", parents=[debug], help="tag whitespace-tokenised text (one sentence per line)",
                        description="Reads text from --input or stdin, one sentence per line, tokens separated by "
                        "whitespace, and prints `token TAG` per line with a blank line between sentences.")  # fmt: skip
    pr.add_argument("--run", required=True, help="a run directory written by `jaxbackprop train`")
    pr.add_argument("--input", help="a text file (default: stdin)")
    pr.add_argument("--decode", choices=DECODERS, help="how tags are read off the softmax (default: the run's --decode)")
    pr.set_defaults(func=_predict)
    return parser


def main(argv=None) -> int:
    """Run one command; every error ends it with a single line on stderr (see :func:`_error_line`).

    Exit codes: 0 done; 1 ``check`` found a gradient beyond tolerance; 2 an error in what was
    given (options, files, run directory) or a diverged training run; 3 an internal error, a bug;
    130 interrupted. ``--debug`` or ``JAXBACKPROP_DEBUG=1`` adds the traceback.
    """
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("JAXBACKPROP_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _print_traceback(debug)
        print("jaxbackprop: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every error becomes one line; --debug keeps the traceback
        _print_traceback(debug)
        code, message = _error_line(err)
        print(f"jaxbackprop: error: {message}", file=sys.stderr)
        return code


def _error_line(err: Exception) -> tuple[int, str]:
    """The exit code and one-line message for an exception that ended a command.

    What a user can fix says its own message (these name the file and line, or the option):
    ``ValueError`` (``data.DataError``, checkpoint and run-directory errors, bad settings),
    ``OSError`` as ``<path>: <reason>``, ``train.TrainingDiverged``. Anything else is a bug.
    """
    from jaxbackprop import train

    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return 2, _one_line(f"{err.filename}: {err.strerror}")
    if isinstance(err, (ValueError, OSError, train.TrainingDiverged)):
        return 2, _one_line(str(err) or type(err).__name__)
    what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return 3, _one_line(f"internal error: {what} (run with --debug for the traceback)")


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _print_traceback(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
