"""The ``jaxbackprop`` command: thin wrappers that parse arguments, call the library, print."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path


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
            raise SystemExit("error: --dev/--test need --train (without files the embedded synthetic corpus is used)")
        corpus = synthetic.synthetic_corpus(seed=0)
        pretrained = synthetic.synthetic_vectors() if args.embeddings is None else embeddings.read_embeddings(args.embeddings)
        print(f"no --train given: using the embedded synthetic corpus ({len(corpus['train'])} / {len(corpus['dev'])} / "
              f"{len(corpus['test'])} sentences) and its synthetic word vectors")  # fmt: skip
        return corpus["train"], corpus["dev"], corpus["test"], pretrained
    if args.dev is None:
        raise SystemExit("error: --train needs --dev (the best epoch is chosen on dev F1)")
    test = data.read_conll(args.test) if args.test else None
    pretrained = embeddings.read_embeddings(args.embeddings) if args.embeddings else None
    return data.read_conll(args.train), data.read_conll(args.dev), test, pretrained


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
    try:
        train.train_and_evaluate(cfg, prepared, run_dir, resume=args.resume, progress=not args.no_progress)
    except train.TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _evaluate(args) -> int:
    from jaxbackprop import data, train

    cfg, mcfg, vocab, tags, params = train.load_run(args.run)
    sents = data.read_conll(args.data)
    unknown = sorted({t for s in sents for t in s.tags} - set(tags))
    if unknown:
        raise SystemExit(f"error: {args.data}: tags {unknown} were not in the training data {list(tags)}")
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

    cfg, mcfg, vocab, tags, params = train.load_run(args.run)
    text = Path(args.input).read_text() if args.input else sys.stdin.read()
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
               "activation": ACTIVATIONS, "init": ("xavier", "normal", "zeros")}  # fmt: skip
    group = parser.add_argument_group("model and training (defaults: the best configuration found on CoNLL-2003)")
    for f in dataclasses.fields(train.TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            group.add_argument(flag, action="store_true", default=None, help=f"{docs.get(f.name, '')} (default: {default})")
        else:
            kind = float if default is None else type(default)  # optional rates default to None
            group.add_argument(flag, type=kind, choices=choices.get(f.name), default=None,
                               help=f"{docs.get(f.name, '')} (default: {default})")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from jaxbackprop.decode import DECODERS
    from jaxbackprop.nonlinearities import ACTIVATIONS

    parser = argparse.ArgumentParser(
        prog="jaxbackprop",
        description="Backpropagation for the window-based NER classifier: hand-derived gradients, "
        "checked against jax.grad and numeric differences.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
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
    check.add_argument("--directions", type=int, default=8, help="random directions per large tensor (default 8)")
    check.set_defaults(func=_check)

    demo = sub.add_parser(
        "graph-demo",
        help="the lecture's worked example f = (x + y) max(y, z) on the computation-graph engine",
        description="Runs f(x, y, z) = (x + y) * max(y, z) at x=1, y=2, z=0 forward and backward on "
        "jaxbackprop.graph and prints each edge's value, each node's upstream, local and downstream "
        "gradients, the wiggle check, and the three gradient-flow patterns.",
    )
    demo.set_defaults(func=_graph_demo)

    tr = sub.add_parser(
        "train",
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
    tr.add_argument("--resume", action="store_true", help="continue the run in --run-dir after its last finished epoch")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_train_options(tr)
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="entity F1 of a trained run on a CoNLL file",
                        description="Loads the best checkpoint of --run and prints entity-level P/R/F1 (CoNLL rules), "
                        "per-type scores and token accuracy on --data.")  # fmt: skip
    ev.add_argument("--run", required=True, help="a run directory written by `jaxbackprop train`")
    ev.add_argument("--data", required=True, help="a CoNLL file with gold tags")
    ev.add_argument("--decode", choices=DECODERS, help="how tags are read off the softmax (default: the run's --decode)")
    ev.set_defaults(func=_evaluate)

    sw = sub.add_parser(
        "sweep",
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
    sw.add_argument("--optimizer", action="append", help="optax optimizer name (repeatable; default: sgd momentum adagrad rmsprop adam adamw)")
    sw.add_argument("--learning-rate", action="append", type=float, help="repeatable (default: 1e-4 ... 1e0, powers of ten)")
    sw.add_argument("--schedule", action="append", choices=("constant", "step", "exponential", "cosine", "cyclic", "warmup_cosine"), help="repeatable (default: constant)")
    sw.add_argument("--l2", action="append", type=float, help="repeatable (default: 0)")
    sw.add_argument("--seed", action="append", type=int, help="repeatable (default: 0)")
    sw.add_argument("--epochs", type=int, default=3, help="epochs per configuration (default: 3)")
    sw.add_argument("--hidden-dim", type=int, default=100, help="hidden units (default: 100)")
    sw.add_argument("--batch-size", type=int, default=128, help="windows per step (default: 128)")
    sw.add_argument("--chunk", type=int, help="configurations per vmapped program (default: chosen so it is never slower than sequential)")
    sw.add_argument("--quick", action="store_true", help="a tiny sweep (sgd, adam x 1e-2, 1e-1; 1 epoch; small model) in seconds")
    sw.set_defaults(func=_sweep)

    pr = sub.add_parser("predict", help="tag whitespace-tokenised text (one sentence per line)",
                        description="Reads text from --input or stdin, one sentence per line, tokens separated by "
                        "whitespace, and prints `token TAG` per line with a blank line between sentences.")  # fmt: skip
    pr.add_argument("--run", required=True, help="a run directory written by `jaxbackprop train`")
    pr.add_argument("--input", help="a text file (default: stdin)")
    pr.add_argument("--decode", choices=DECODERS, help="how tags are read off the softmax (default: the run's --decode)")
    pr.set_defaults(func=_predict)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
