"""The ``jaxbackprop`` command: thin wrappers that parse arguments, call the library, print.

The arguments are defined in :mod:`jaxbackprop.cli_args`; each subcommand here is one function.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time

from jaxbackprop.cli_args import EXIT_PROCESSES, build_parser, distributed
from jaxbackprop.cli_text import one_line

LARGE_VOCAB = 100_000  # above this, a dense embedding update dominates the step on a CPU (BENCHMARKS.md)


def _check(args) -> int:
    """``jaxbackprop check``: the gradient-check matrix, one row per check; exit 1 on a failure."""
    if args.impl is not None:
        return _check_impl(args)
    from jaxbackprop import check_matrix, gradcheck
    from jaxbackprop.nonlinearities import ACTIVATIONS

    activations = args.activation or ACTIVATIONS
    heads = args.head or check_matrix.MATRIX_HEADS  # the window heads and the crf head
    print(
        f"gradient check: {len(activations)} activations x {len(heads)} heads x {len(check_matrix.MATRIX_CASES)} "
        f"cases, float64; tolerances: manual~autodiff <= {gradcheck.MANUAL_VS_AUTODIFF_RTOL:g}, "
        f"numeric <= {gradcheck.NUMERIC_RTOL:g} (relative)\n"
    )
    print(
        f"{'activation / head / case':<40} {'manual~autodiff':>16} {'numeric~manual':>15} {'numeric~autodiff':>17}  ok"
    )
    worst: dict = {}
    failed = 0
    for result in check_matrix.check_matrix(activations=activations, heads=heads, directions=args.directions):
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


def _check_impl(args) -> int:
    """``jaxbackprop check --impl FILE``: a student's backward steps against the reference's, one by one."""
    from jaxbackprop import impl_cli

    return impl_cli.run(args)


def _exercise(args) -> int:
    """``jaxbackprop exercise``: write the skeleton of the backward pass for a student to fill in."""
    from jaxbackprop import exercise

    path, written = exercise.write_skeleton(args.out, force=args.force, hints=args.hints)
    done = "wrote" if written else "unchanged (already the fresh skeleton):"
    print(f"{done} {path}: {len(exercise.ORDER)} backward steps to fill in, {', '.join(exercise.ORDER)}")
    print(
        f"next: fill in a step (start with {exercise.ORDER[0]}), then run: jaxbackprop check --impl {path} --head score"
    )
    print("      a step that still raises NotImplementedError is done by the reference meanwhile")
    return 0


def _print_row(result) -> None:
    if result.error:
        print(f"{result.label:<40} {'-':>16} {'-':>15} {'-':>17}  NO: {result.error}")
        return
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
    from jaxbackprop import check_matrix, gradcheck, model

    cfg = model.ModelConfig(vocab_size=20_000, embed_dim=50, window=5, hidden_dim=200, activation="tanh", l2=1e-3)
    batch, _ = check_matrix.case_batch("repeated words", 0, cfg, batch_size=64)
    label = "large: V=20000 d=50 H=200 B=64 tanh/softmax, repeated words"
    return gradcheck.check_gradients(check_matrix.check_params(0, cfg), batch, cfg, directions=directions, label=label)


def _graph_demo(args) -> int:
    """``jaxbackprop graph-demo``: the lecture's worked example, printed."""
    from jaxbackprop import graph_demo

    print(graph_demo.demo_text())
    return 0


def _load_corpus(args):
    """Sentences of each split and pretrained vectors: the given files, or the embedded default."""
    from jaxbackprop import data, embeddings, synthetic

    if args.train is None:
        corpus = synthetic.synthetic_corpus(seed=0)
        pretrained = (
            synthetic.synthetic_vectors() if args.embeddings is None else embeddings.load_pretrained(args.embeddings)
        )
        sizes = " / ".join(str(len(corpus[split])) for split in ("train", "dev", "test"))
        print(
            f"no --train given: using the embedded synthetic corpus ({sizes} sentences) and its synthetic word vectors"
        )
        return corpus["train"], corpus["dev"], corpus["test"], pretrained
    train_sents = data.read_conll(args.train)
    tags = data.tags_from(train_sents)  # a dev/test tag outside them is reported at its file and line
    dev_sents = data.read_conll(args.dev, allowed_tags=tags)
    test_sents = data.read_conll(args.test, allowed_tags=tags) if args.test else None
    pretrained = embeddings.load_pretrained(args.embeddings) if args.embeddings else None
    return train_sents, dev_sents, test_sents, pretrained


def _check_corpus_options(args) -> None:
    """Refuse a corpus given in part (checked before JAX imports and anything loads)."""
    if args.train is None and (args.dev or args.test):
        raise ValueError("--dev/--test need --train (without files the embedded synthetic corpus is used)")
    if args.train is not None and args.dev is None:
        raise ValueError("--train needs --dev (the best epoch is chosen on dev F1)")


def _out_dir(out: str | None, command: str) -> str:
    """``--out``, or ``runs/<command>-<time>``; a path that is a file is refused before anything loads."""
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{out}: exists and is not a directory; choose another --out")
    return out or f"runs/{command}-{time.strftime('%Y%m%d-%H%M%S')}"


def _train(args) -> int:
    """``jaxbackprop train``: prepare the corpus, train, write the run directory."""
    from jaxbackprop import config, settings

    names = (*config.MODEL_FIELDS, *config.TRAIN_FIELDS)
    run_config = config.configure(**{n: getattr(args, n) for n in names if getattr(args, n) is not None})
    out = _out_dir(args.out, "train")
    _check_corpus_options(args)

    from jaxbackprop import parallel  # JAX: only once the options are known to be right

    if run_config.model.head not in settings.SENTENCE_HEADS:  # crf: its sentences per step are rounded to the devices
        parallel.check_batch_divides(run_config.batch_size, parallel.mesh_for(args.devices))  # before the corpus loads
    with _directory_lock(out):  # a second process into `out` is refused before it spends the corpus's loading
        return _train_locked(args, run_config, out)


def _directory_lock(out: str):
    """The lock of a run or sweep directory (:mod:`jaxbackprop.dirlock`), held by the process that writes it:
    taken here, before the corpus loads; the library's own call inside then re-enters it."""
    import jax

    from jaxbackprop import dirlock

    return dirlock.locked(out) if jax.process_index() == 0 else contextlib.nullcontext()


def _train_locked(args, run_config, out: str) -> int:
    from jaxbackprop import pipeline, train, vectors

    train_s, dev_s, test_s, pretrained = _load_corpus(args)
    prepared = pipeline.prepare_for(run_config, train_s, dev_s, test_s, pretrained)
    if args.embeddings:
        prepared = prepared._replace(embeddings_source=vectors.source(args.embeddings))
    if prepared.coverage:
        c = prepared.coverage
        print(f"pretrained vectors cover {c['found']} of {c['vocab_size']} vocabulary words ({c['fraction']:.1%})")
    run_config = _rows_only_by_size(args, run_config, len(prepared.vocab))
    sizes = (
        f"{len(prepared.train.windows)} training windows, vocabulary {len(prepared.vocab)}, {len(prepared.tags)} tags"
    )
    print(f"{sizes} -> {out}")
    progress = not args.no_progress
    train.train_and_evaluate(
        run_config, prepared, out, resume=args.resume, overwrite=args.overwrite, progress=progress, devices=args.devices
    )
    return 0


def _rows_only_by_size(args, run_config, vocab_size: int):
    """Rows-only updates (``--sparse``) for a vocabulary over :data:`LARGE_VOCAB` words unless the user chose:
    the dense step reads and writes all of E and its optimizer state every step (3x slower per CoNLL epoch
    at 354,844 words, the same F1: README, BENCHMARKS.md)."""
    from jaxbackprop import config

    if vocab_size <= LARGE_VOCAB or run_config.sparse or run_config.embeddings_mode != "finetune":
        return run_config
    if args.sparse is False or run_config.grad != "manual":
        print(
            f"note: a vocabulary of {vocab_size:,} words -- the dense {run_config.optimizer} step reads and writes "
            "every row of E (and its optimizer state) on every step; --sparse (with --grad manual) updates only the "
            "rows in the batch"
        )
        return run_config
    print(f"rows-only updates of E (--sparse): a vocabulary of {vocab_size:,} words (--no-sparse: the dense step)")
    return config.configure(run_config, sparse=True)


def _evaluate(args) -> int:
    """``jaxbackprop evaluate``: scores of a trained run on a labelled CoNLL file."""
    import numpy as np

    from jaxbackprop import coverage, data, metrics, rundir
    from jaxbackprop.evaluate import evaluate, predict_labels

    run_config, model_cfg, vocab, tags, params = rundir.load_run(args.run)
    _refuse_non_finite(args.run, params)
    sents = data.read_conll(args.data, allowed_tags=tags)
    ds = data.make_windows(sents, vocab, data.make_tag_index(tags), model_cfg.window)
    decoder = args.decode or run_config.decode
    result = evaluate(params, ds, tags, model_cfg, decoder)
    versus = f", per-token argmax {result['argmax_f1']:.4f}" if decoder != "argmax" else ""
    print(
        f"{args.data}: entity F1 {result['f1']:.4f} (P {result['precision']:.4f} R {result['recall']:.4f}; "
        f"{decoder} decoding{versus}), token accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}"
    )
    for t, s in sorted(result["per_type"].items()):
        print(f"  {t:<6} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  ({s['support']} entities)")
    origins = rundir.read_config(args.run).get("vocabulary")
    if origins is not None:  # runs before the vocabulary's origins were recorded have no split
        pred, _ = predict_labels(params, ds, tags, model_cfg, decoder)
        split = coverage.entity_scores_by_origin(
            [s.tags for s in sents],
            metrics.split_by_lengths(list(np.asarray(tags)[pred]), ds.sentence_lengths),
            [s.tokens for s in sents],
            vocab,
            origins,
        )
        print("entity F1 by the words' coverage (an entity counts where its least covered word puts it):")
        print(coverage.table(split))
    return 0


def _refuse_non_finite(run, params) -> None:
    """A ValueError naming the first tensor of a run's best parameters that holds nan or inf:
    scored, it would read as loss nan and F1 0 without a word."""
    import numpy as np

    for name, value in params.items():
        if not np.isfinite(np.asarray(value)).all():
            raise ValueError(
                f"{os.path.join(run, 'best.npz')}: tensor {name} holds non-finite values (nan or inf); "
                "these parameters cannot tag anything"
            )


def _predict(args) -> int:
    """``jaxbackprop predict``: ``token TAG`` lines for whitespace-tokenised text."""
    if sys.stdout is None:  # started with its standard output closed (`>&-`)
        raise ValueError("standard output is closed: predict writes its tags there (redirect it, e.g. > tags.txt)")
    import numpy as np

    from jaxbackprop import data, rundir
    from jaxbackprop.evaluate import predict_labels

    text = data.read_text(args.input) if args.input else None  # a wrong path fails before the run loads
    run_config, model_cfg, vocab, tags, params = rundir.load_run(args.run)
    _refuse_non_finite(args.run, params)
    text = sys.stdin.read() if text is None else text
    sentences = [line.split() for line in text.splitlines() if line.strip()]
    if not sentences:
        return 0
    ds = data.windows_for_tokens(sentences, vocab, model_cfg.window)
    pred, _ = predict_labels(params, ds, tags, model_cfg, args.decode or run_config.decode)
    tag_arr = np.asarray(tags)
    out, start = [], 0
    for tokens in sentences:
        out += [f"{tok} {tag}" for tok, tag in zip(tokens, tag_arr[pred[start : start + len(tokens)]])] + [""]
        start += len(tokens)
    sys.stdout.write("\n".join(out))
    return 0


SWEEP_BASE = {"epochs": 3, "hidden_dim": 100}  # a sweep's model, smaller than train's
QUICK_BASE = {"epochs": 1, "hidden_dim": 32, "window": 3, "feature_dim": 4}  # --quick; --epochs/--hidden-dim win


def _sweep(args) -> int:
    """``jaxbackprop sweep``: train the product of the given axes, print the table, write the results."""
    import itertools

    from jaxbackprop import config, settings

    _check_corpus_options(args)
    out = _out_dir(args.out, "sweep")
    given = {name: getattr(args, name) for name in ("epochs", "hidden_dim") if getattr(args, name) is not None}
    base = config.configure(**{**SWEEP_BASE, **(QUICK_BASE if args.quick else {}), **given}, batch_size=args.batch_size)
    optimizers = args.optimizer or (("sgd", "adam") if args.quick else settings.SWEEP_OPTIMIZERS)
    rates = args.learning_rate or ((1e-2, 1e-1) if args.quick else settings.SWEEP_LEARNING_RATES)
    heads = args.head or ("softmax",)
    axes = (heads, optimizers, rates, args.schedule or ("constant",), args.l2 or (0.0,), args.seed or (0,))
    table = [
        {"head": h, "optimizer": o, "learning_rate": lr, "schedule": s, "l2": l2, "seed": seed}
        for h, o, lr, s, l2, seed in itertools.product(*axes)
    ]

    from jaxbackprop import parallel  # JAX: only once the options are known to be right

    parallel.mesh_for(args.devices)  # a wrong --devices fails before the corpus loads
    with _directory_lock(out):
        return _sweep_locked(args, table, base, out)


def _sweep_locked(args, table: list, base, out: str) -> int:
    from jaxbackprop import pipeline, sweep

    train_s, dev_s, test_s, pretrained = _load_corpus(args)
    if args.quick:
        train_s, dev_s = train_s[:600], dev_s[:150]
    prepared = pipeline.prepare_for(base, train_s, dev_s, None, pretrained)
    print(f"sweep of {len(table)} configurations, {base.epochs} epoch(s) each -> {out}")
    rows = sweep.run_sweep(
        table, prepared, out, base=base, chunk=args.chunk, devices=args.devices, overwrite=args.overwrite
    )
    print(
        f"\n{'head':<7} {'optimizer':<9} {'lr':>8} {'schedule':<9} {'l2':>7} {'seed':>4}  best dev F1  epoch  diverged"
    )
    for r in rows:
        f1 = "-" if r["best_dev_f1"] is None else f"{r['best_dev_f1']:.4f}"
        print(
            f"{r['head']:<7} {r['optimizer']:<9} {r['learning_rate']:>8.0e} {r['schedule']:<9} {r['l2']:>7g} "
            f"{r['seed']:>4}  "
            f"{f1:>11}  {r['best_epoch'] or '-':>5}  {'yes' if r['diverged'] else 'no'}"
        )
    print(f"results: {out}/results.csv, results.json, curves.png, heatmap.png")
    return 0


COMMANDS = {
    "check": _check,
    "exercise": _exercise,
    "graph-demo": _graph_demo,
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "sweep": _sweep,
}


def main(argv=None) -> int:
    """Run one command; every error ends it with a single line on stderr (see :func:`_error_line`).

    Exit codes: 0 done; 1 ``check`` found a gradient beyond tolerance; 2 an error in what was
    given (options, files, run directory) or a diverged training run; 3 an internal error, a bug;
    4 (:data:`~jaxbackprop.cli_args.EXIT_PROCESSES`) the processes of a multi-process run did not
    all join within ``--init-timeout``, or one of them was lost; 5 ``check --impl`` found no step
    wrong but some not done (INCOMPLETE); 130 interrupted; 141 the output was closed before all of
    it was written (``| head``). ``--debug`` or ``JAXBACKPROP_DEBUG=1`` adds the
    traceback. A process of a multi-process run that fails ends at once after its line, without JAX's
    shutdown barrier (which would wait minutes for processes that are gone, then abort).
    """
    from jaxbackprop import impl_cli

    argv = sys.argv[1:] if argv is None else list(argv)
    if impl_cli.is_impl_check(argv):  # the light path: neither the full command line nor JAX imported
        args, joining = impl_cli.parse(argv), False
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        if distributed(args) and args.command != "train":
            parser.error(f"--distributed runs `train` only, not `{args.command}`")
        joining = distributed(args)
    debug = args.debug or os.environ.get("JAXBACKPROP_DEBUG", "") not in ("", "0")
    several = joining
    try:
        quiet = several and _join_processes(args) > 0
        with _silenced(quiet, several):
            code = COMMANDS[args.command](args)
        if sys.stdout is not None:
            sys.stdout.flush()  # a reader gone (`| head`) shows here, not in Python's last flush at exit
        return code
    except BrokenPipeError:
        return _output_closed()
    except KeyboardInterrupt:
        _print_traceback(debug)
        return _end(several, "jaxbackprop: interrupted", 130)
    except Exception as err:  # every error becomes one line; --debug keeps the traceback
        _print_traceback(debug)
        code, message = _processes_error_line(err) if several else _error_line(err)
        return _end(several, f"jaxbackprop: error: {message}", code)


def _end(several: bool, line: str, code: int) -> int:
    """Print the line that ends a failed command on stderr; return its exit code, or exit at once
    in a multi-process run (skipping JAX's shutdown barrier, which waits for processes that may be gone)."""
    print(line, file=sys.stderr)
    if several:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _processes_error_line(err: Exception) -> tuple[int, str]:
    """:func:`_error_line` in a multi-process run, where a lost process is exit code 4, not a bug."""
    from jaxbackprop import parallel

    if parallel.lost_process(err):
        return EXIT_PROCESSES, one_line(f"lost contact with another process of the run ({err})")
    return _error_line(err)


def _output_closed() -> int:
    """The reader of the output went away (``jaxbackprop evaluate ... | head -1``): end quietly with
    141, the status of a process that SIGPIPE ended (128 + 13), as other command-line tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the rest of the buffer goes nowhere, Python's last flush too
    return 141


def _join_processes(args) -> int:
    """``jax.distributed.initialize``, before anything else touches JAX; returns this process's index.

    The run then spans every process's devices (unless ``--devices`` says otherwise), and only
    process 0 shows progress.
    """
    from jaxbackprop import parallel

    where = (args.coordinator, args.num_processes, args.process_id)
    line = f"jaxbackprop: {parallel.waiting_for(*where, args.init_timeout)}"
    say = functools.partial(print, line, file=sys.stderr, flush=True)
    # auto-detected (SLURM, Open MPI): said once the wait lasts, so not before "no cluster was detected"
    announce = threading.Timer(2, say)
    if None in where:
        announce.start()
    else:
        say()
    try:
        index, count = parallel.initialize_distributed(
            *where,
            timeout=args.init_timeout,
            on_timeout=lambda message: _end(True, f"jaxbackprop: error: {message}", EXIT_PROCESSES),
        )
    finally:
        announce.cancel()
    args.devices = "all" if args.devices is None else args.devices
    args.no_progress = args.no_progress or index > 0
    if index == 0:
        import jax

        every = f"{count} ({jax.device_count()} devices in all)"
        print(f"process 0 of {every}: training over {args.devices} devices; the other processes print nothing")
    return index


@contextlib.contextmanager
def _silenced(quiet: bool, several: bool = False):
    """Standard output to nowhere while ``quiet`` (the other processes of a run); errors still reach stderr.

    With ``several`` processes, what native code writes to file descriptor 1 goes to nowhere in
    every process (:func:`_native_stdout_to_nowhere`).
    """
    with contextlib.ExitStack() as stack:
        if several:
            stack.enter_context(_native_stdout_to_nowhere())
        if quiet:
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        yield


@contextlib.contextmanager
def _native_stdout_to_nowhere():
    """File descriptor 1 to nowhere, while Python's ``print`` still reaches the real standard output.

    Gloo writes "[Gloo] Rank i is connected to j peer ranks ..." to the C++ standard output when the
    processes first exchange gradients; ``contextlib.redirect_stdout`` does not reach it.
    """
    sys.stdout.flush()
    kept = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    ours = open(kept, "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors, closefd=False)
    ours.reconfigure(line_buffering=sys.stdout.line_buffering)
    try:
        with contextlib.redirect_stdout(ours):
            yield
    finally:
        ours.close()  # flushes into the real standard output
        os.dup2(kept, 1)
        os.close(kept)


def _error_line(err: Exception) -> tuple[int, str]:
    """The exit code and one-line message for an exception that ended a command.

    What a user can fix says its own message (these name the file and line, or the option):
    ``ValueError`` (``data.DataError``, checkpoint and run-directory errors, bad settings),
    ``OSError`` as ``<path>: <reason>``, ``train.TrainingDiverged``. Anything else is a bug.
    """
    train = sys.modules.get("jaxbackprop.train")  # not imported: the error cannot be its TrainingDiverged
    diverged = train is not None and isinstance(err, train.TrainingDiverged)
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return 2, one_line(f"{err.filename}: {err.strerror}")
    if diverged or isinstance(err, (ValueError, OSError)):
        return 2, one_line(str(err) or type(err).__name__)
    what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return 3, one_line(f"internal error: {what} (run with --debug for the traceback)")


def _print_traceback(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
