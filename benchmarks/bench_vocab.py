"""One CoNLL-2003 training epoch at the full GloVe vocabulary: dense Adam, rows-only updates, PyTorch SparseAdam.

    python benchmarks/bench_vocab.py --conll PATH/conll2003/train.txt   # the real training file (~5 min)
    python benchmarks/bench_vocab.py                                    # a stand-in of the same size
    python benchmarks/bench_vocab.py --quick                            # V = 20k, a small corpus: seconds

The workload of issue 22: the window model (window 5, H = the default hidden size, relu, softmax head
of 9 tags, d = 50, float32, lr 1e-3, no dropout, no feature table) with a word table of ``VOCAB`` rows
(CoNLL-2003's training words and all 400,000 GloVe 6B words), trained on the windows of the CoNLL
training file in a shuffled order. The arms, on the same batches:

* ``dense_adam``: the hand-derived dense gradient, ``optax.adam`` on every parameter (four (V, d)
  tables read and written per step: E, its gradient, m, v);
* ``rows_adam``: :func:`jaxbackprop.sparse.make_sparse_step`, lazy Adam on the batch's rows of E,
  ``optax.adam`` on the rest (``jaxbackprop train --sparse``);
* ``rows_adagrad``: the same with rows-only Adagrad and ``optax.adagrad`` (``--optimizer adagrad --sparse``);
* ``torch_sparse_adam``: ``nn.Embedding(sparse=True)`` with ``torch.optim.SparseAdam`` for E and Adam
  for the rest (skipped with a message when torch, the optional extra ``.[torch]``, is absent).

Only the step is timed, never loading: the embedding values do not change its cost, so E is
initialised at random; what matters is which rows a batch names. The word ids are laid out as the
real vocabulary lays them out: training words seen twice or more first, by frequency, then the
rarer words at GloVe's rows, spread over the rest of the table (seeded). Without ``--conll`` the
corpus is a stand-in with CoNLL's sentence and token counts and Zipf-distributed words.

Each arm runs consecutive batches of the shuffled epoch, about ``min_time`` seconds per repeat;
repeats run round-robin over the arms so that load from other processes lands on all alike.
``epoch_s`` is the median step time times the epoch's steps (the slow dense arm is never run for a
whole epoch), with quartiles; JAX steps are called one by one, as torch's are (``jaxbackprop train``
runs the epoch as one ``lax.scan`` program, which ``bench_epoch.py`` times). Writes
benchmarks/results/bench_vocab.json (``--out``; with ``--quick`` and no ``--out``, a temporary folder)
and, on a full run, its section of BENCHMARKS.md.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch_peers
from jax_variants import compile_with_info, dense_step, train_loop

from jaxbackprop import backprop, config, data, model, provenance, sparse, vocab

VOCAB = 354_844  # CoNLL-2003 train's words and GloVe 6B's 400k words, as `jaxbackprop train` builds it
CONLL = dict(sentences=14_041, tokens=203_621, words=17_492)  # the English training file's counts
TAGS = ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER")  # harness.CLASSES of them
DEFAULT_BATCH = config.TrainConfig().batch_size
TORCH = "torch_sparse_adam"
ARMS = ("dense_adam", "rows_adam", "rows_adagrad", TORCH, f"{TORCH}[1t]")
FULL = dict(vocab=VOCAB, batches=(32, 256, DEFAULT_BATCH, 4096), repeats=5, min_time=1.0, scale=1)
QUICK = dict(vocab=20_000, batches=(64, DEFAULT_BATCH), repeats=3, min_time=0.02, scale=10, hidden=32)
TARGET = 1.5  # rows-only >= 1.5 x SparseAdam at the default batch size and above (issue 22)


def stand_in_corpus(sentences, tokens, words, seed=0) -> list:
    """Sentences of Zipf-distributed words (:func:`word`) with random tags: CoNLL's counts, no text needed."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, words + 1, dtype=np.float64) ** -harness.ZIPF_EXPONENT
    ranks = rng.choice(words, size=tokens, p=p / p.sum())
    tags = np.asarray(TAGS)[rng.integers(0, len(TAGS), tokens)]
    cuts = np.sort(rng.choice(np.arange(1, tokens), size=sentences - 1, replace=False))
    return [
        data.Sentence(tuple(map(word, rs)), tuple(ts)) for rs, ts in zip(np.split(ranks, cuts), np.split(tags, cuts))
    ]


def word(rank: int) -> str:
    """A distinct word per rank, in letters (the vocabulary maps every digit to 0): 0 -> "a", 26 -> "ba"."""
    letters = ""
    while True:
        rank, r = divmod(int(rank), 26)
        letters = chr(ord("a") + r) + letters
        if rank == 0:
            return letters


def vocabulary_rows(sentences, vocab_size, seed=0) -> np.ndarray:
    """Where each id of the training vocabulary (``build_vocab(sentences, 1)``) sits in a table of
    ``vocab_size`` rows: reserved ids and words seen twice or more keep their id (by frequency, as
    ``build_vocab`` with min_count 2 orders them); the rarer words take distinct rows spread over the
    rest of the table, as their GloVe rows are."""
    frequent = len(vocab.build_vocab(sentences, 2))
    total = len(vocab.build_vocab(sentences, 1))
    if total > vocab_size:
        raise SystemExit(f"bench_vocab: the training file has {total:,} words, more than the {vocab_size:,} rows")
    rare = np.random.default_rng(seed).choice(np.arange(frequent, vocab_size), total - frequent, replace=False)
    return np.concatenate([np.arange(frequent), rare]).astype(np.int32)


def epoch_windows(sentences, vocab_size, seed=0):
    """``(windows (T, 5), labels (T,))`` of every training token, in a shuffled order, ids in the big table."""
    v = vocab.build_vocab(sentences, 1)
    ds = data.make_windows(sentences, v, data.make_tag_index(data.tags_from(sentences)), harness.WINDOW)
    order = np.random.default_rng(seed).permutation(len(ds.labels))
    return vocabulary_rows(sentences, vocab_size, seed)[ds.windows[order]], ds.labels[order].astype(np.int32)


def jax_arm(name, cfg, windows, labels):
    """A :class:`harness.Runner` of one JAX arm stepping through the epoch's batches (B, 5)."""
    batches = [{"windows": jnp.asarray(w), "labels": jnp.asarray(y)} for w, y in zip(windows, labels)]
    params = model.init_params(jax.random.key(0), cfg)
    if name == "dense_adam":
        tx = optax.adam(harness.LR)
        step, state, extra = dense_step(cfg, backprop.manual_value_and_grad, tx), tx.init(params), ()
    else:
        rule = name.removeprefix("rows_")
        tx = optax.adam(harness.LR) if rule == "adam" else optax.adagrad(harness.LR)
        init, step = sparse.make_sparse_step(cfg, tx, rule, harness.LR)
        state, extra = init(params), (None,)  # None: the dropout key (no dropout here)
    compiled, info = compile_with_info(step, params, state, batches[0], *extra)
    return harness.Runner(name, train_loop(compiled, params, state, batches, extra), info=info)


def torch_arms(torch, shape, hidden, windows, labels) -> list:
    """The same model in torch: a sparse embedding gradient, SparseAdam for E and Adam for the rest; at
    torch's default thread count and (where that is more) at one thread, ``torch_sparse_adam[1t]``: on a
    busy machine torch's OpenMP threads wait for descheduled peers."""
    torch.manual_seed(0)
    m = torch_peers.window_module(torch, shape, hidden, True)
    opt, kw = torch_peers.adam(torch, [p for n, p in m.named_parameters() if n != "E.weight"])
    opts = [torch.optim.SparseAdam([m.E.weight], lr=harness.LR), opt]
    batches = [(torch.from_numpy(w).long(), torch.from_numpy(y).long()) for w, y in zip(windows, labels)]
    run = torch_peers.train_loop(m, opts, batches, lambda: None)  # on the CPU: nothing to wait for
    # one model for both settings: the thread count changes the speed, not the work
    arms = [harness.Runner(TORCH, run, info={"adam": kw})]
    if torch.get_num_threads() > 1:
        arms.append(harness.Runner(f"{TORCH}[1t]", run, threads=1, info={"adam": kw}))
    return arms


def bench_batch(batch, windows, labels, sizes, torch) -> dict:
    """Every arm at batch size ``batch``, timed round-robin: one row per arm and the ratios."""
    steps = len(labels) // batch  # full batches only (one program per arm); the epoch's last few windows wait
    w = windows[: steps * batch].reshape(steps, batch, harness.WINDOW)
    y = labels[: steps * batch].reshape(steps, batch)
    shape = harness.Shape(batch, sizes["vocab"], 50, "conll")
    cfg = harness.model_config(shape, sizes["hidden"])
    print(f"B={batch}: {steps} steps per epoch; building", flush=True)
    runners = [jax_arm(name, cfg, w, y) for name in ARMS[:3]]
    if torch is not None:
        runners += torch_arms(torch, shape, sizes["hidden"], w, y)
    harness.time_round_robin(runners, sizes["repeats"], sizes["min_time"], torch_peers.thread_setter(torch))
    rows = {}
    for r in runners:
        med, q1, q3 = harness.spread(r.times)
        rows[r.name] = {
            "step_ms": [1e3 * med, 1e3 * q1, 1e3 * q3],
            "epoch_s": [steps * med, steps * q1, steps * q3],
            "windows_per_s": batch / med,
            "repeats": len(r.times),
            **r.info,
        }
        epoch = f"epoch {steps * med:8.2f} s (IQR {steps * q1:.2f}-{steps * q3:.2f})"
        print(f"  {r.name:18s} {1e3 * med:9.3f} ms/step  {epoch}", flush=True)
    return {"batch": batch, "steps_per_epoch": steps, "arms": rows, "ratios": ratios(rows)}


def ratios(rows) -> dict:
    """Speed-ups (>1: the first arm is faster), medians over medians; SparseAdam at its faster thread setting."""
    t = {k: v["step_ms"][0] for k, v in rows.items()}
    torch = [t[k] for k in (TORCH, f"{TORCH}[1t]") if k in t]
    if torch:
        t["best_torch"] = min(torch)
    pairs = [("rows_adam", "best_torch"), ("rows_adagrad", "best_torch"), ("rows_adam", "dense_adam")]
    return {f"{a}_vs_{b}": t[b] / t[a] for a, b in pairs if a in t and b in t}


def corpus(conll, sizes):
    """``(windows, labels, source)`` of the real training file or the stand-in."""
    if conll is None:
        counts = {k: v // sizes["scale"] for k, v in CONLL.items()}
        return *epoch_windows(stand_in_corpus(**counts), sizes["vocab"]), {"corpus": "stand-in", **counts}
    try:
        sentences = data.read_conll(conll)
    except (OSError, ValueError) as e:
        raise SystemExit(f"bench_vocab: --conll {conll}: {e.strerror if isinstance(e, OSError) else e}") from None
    source = {"corpus": provenance.portable_path(conll), "sha256": provenance.sha256_file(conll)}
    return *epoch_windows(sentences, sizes["vocab"]), source


def bench(quick: bool, conll=None, batches=None) -> dict:
    sizes = {"hidden": config.default_model().hidden_dim, **(QUICK if quick else FULL)}
    sizes["batches"] = tuple(batches or sizes["batches"])
    load_before, t0 = os.getloadavg(), time.perf_counter()
    windows, labels, source = corpus(conll, sizes)  # first: a bad --conll stops the run before anything else
    torch = torch_peers.import_torch()
    rows = [bench_batch(b, windows, labels, sizes, torch) for b in sizes["batches"]]
    return {
        "environment": harness.environment(
            quick=quick,
            **source,
            windows=len(labels),
            vocab=sizes["vocab"],
            hidden_dim=sizes["hidden"],
            embed_dim=50,
            window=harness.WINDOW,
            classes=harness.CLASSES,
            learning_rate=harness.LR,
            repeats=sizes["repeats"],
            min_time_s=sizes["min_time"],
            torch=None if torch is None else torch.__version__,
            torch_threads=None if torch is None else torch.get_num_threads(),
        ),
        "batches": rows,
        "targets": targets(rows),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "wall_s": time.perf_counter() - t0,
    }


def targets(rows) -> list:
    """One line per rows-only rule and batch size >= the default: >= TARGET x SparseAdam, met or not."""
    lines = []
    for r in rows:
        for rule in ("rows_adam", "rows_adagrad"):
            x = r["ratios"].get(f"{rule}_vs_best_torch")
            if x is not None and r["batch"] >= DEFAULT_BATCH:
                verdict = "met" if x >= TARGET else "not met"
                lines.append(f"{rule} >= {TARGET} x the faster SparseAdam at B={r['batch']}: **{verdict}** ({x:.2f} x)")
    return lines


def cell(arm) -> str:
    if arm is None:
        return ""
    med, q1, q3 = (f"{x:,.0f}" if x >= 100 else f"{x:.3g}" for x in arm["epoch_s"])
    return f"{med} ({q1}-{q3})"


def markdown(result) -> str:
    env, load = result["environment"], result["load_average"]
    torch = "absent" if env["torch"] is None else f"{env['torch']} ({env['torch_threads']} threads)"
    lines = [
        f"Machine: {harness.machine_line(env)}; torch {torch}; 1-minute load average "
        f"{load['before'][0]:.1f} before, {load['after'][0]:.1f} after the run; corpus {env['corpus']}, "
        f"{env['windows']:,} windows, V = {env['vocab']:,}, H = {env['hidden_dim']}.",
        "",
        "Seconds per epoch, median (quartiles) of the repeats; the last three columns are speed-ups (>1: the "
        "first named is faster), against SparseAdam at its faster thread setting (`[1t]`: one torch thread).",
        "",
        "| B | steps | dense Adam | rows-only lazy Adam | rows-only Adagrad | torch SparseAdam | SparseAdam [1t] "
        "| lazy Adam / SparseAdam | Adagrad / SparseAdam | lazy Adam / dense |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["batches"]:
        arms, x = r["arms"], r["ratios"]
        ratio_cells = [
            f"{x[k]:.2f}" if k in x else ""
            for k in ("rows_adam_vs_best_torch", "rows_adagrad_vs_best_torch", "rows_adam_vs_dense_adam")
        ]
        cells = [str(r["batch"]), str(r["steps_per_epoch"]), *(cell(arms.get(a)) for a in ARMS), *ratio_cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"- {t}" for t in result["targets"])]
    return "\n".join(lines)


def section(result) -> str:
    return "\n".join(
        [
            "## One CoNLL epoch at the full GloVe vocabulary (issue 22)",
            "",
            "Written by `python benchmarks/bench_vocab.py --conll ../shared/data/conll2003/train.txt` (results: "
            "`benchmarks/results/bench_vocab.json`; the command's own docstring says what each arm is). The same "
            "window model (window 5, relu, softmax head, d = 50) on the same shuffled batches: dense `optax.adam`, "
            "the rows-only step (`jaxbackprop train --sparse`: lazy Adam, or Adagrad) and PyTorch's "
            "`nn.Embedding(sparse=True)` + `SparseAdam`. An epoch is the median step time times the epoch's steps; "
            f"medians of {result['environment']['repeats']} round-robin repeats.",
            "",
            *busy_note(result),
            markdown(result),
        ]
    )


def busy_note(result) -> list:
    """A warning paragraph when the 1-minute load average exceeded the CPU count during the run."""
    load = max(result["load_average"]["before"][0], result["load_average"]["after"][0])
    cpus = result["environment"].get("cpu_count") or 1
    if load <= cpus:
        return []
    return [
        f"**Measured on a busy machine** (1-minute load average up to {load:.1f} on {cpus} CPUs): every time is "
        "inflated, and torch at its default thread count most of all (its OpenMP threads wait for descheduled "
        "peers, hence the `[1t]` arm); the ratios between arms timed round-robin are the more reliable reading, "
        "and even they are noisy.",
        "",
    ]


def main(argv=None):
    p = harness.arg_parser(__doc__, "V = 20k, a tenth of the corpus, H = 32: seconds; a temporary folder unless --out")
    p.add_argument("--conll", type=Path, help="CoNLL-2003 training file (default: a stand-in of the same size)")
    p.add_argument("--batches", help="batch sizes, comma-separated (default 32,256,<the default>,4096)")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/bench_vocab.json)")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else None
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="bench_vocab_")) if args.quick else harness.RESULTS
        out = out / "bench_vocab.json"
    result = bench(args.quick, args.conll, batches)
    harness.write_json(out, result)
    print(markdown(result))
    if not args.quick and args.out is None:
        harness.write_section(harness.ROOT / "BENCHMARKS.md", "bench_vocab", section(result))
    print(f"device {result['environment']['device']}; written to {out}")
    return result


if __name__ == "__main__":
    main()
