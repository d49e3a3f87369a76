"""What every experiment runner shares: arguments, the corpus, quiet training runs, result.json.

Each ``experiments/eNN_<name>.py`` measures one claim of the lecture and writes into
``experiments/results/eNN_<name>/`` (``..._conll`` on CoNLL-2003), or ``--out``:

* ``result.json`` -- the numbers first: the config, the measurements, the checks and the verdict,
  and where they came from: ``environment`` (device, versions, CPU, git commit), the exact
  ``command``, the ``seeds`` and, on real data, the data files' SHA-256. Paths are recorded as
  :func:`jaxbackprop.provenance.portable_path` writes them, never this machine's layout;
* ``*.png`` -- plots drawn from the numbers in ``result.json`` (``figures/eNN.py``).

The prose (claim, what was measured, why the verdict) is a template, ``templates/eNN.md``, that
``make_results.py`` fills from result.json. ``--quick`` (tiny sizes, for the smoke tests) writes
to a fresh temporary folder unless ``--out`` says where, and never under ``experiments/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stats.py beside it, however common is loaded
import stats

from jaxbackprop import data, embeddings, files, model, pipeline, rundir, sweep, synthetic, train, vectors
from jaxbackprop.provenance import environment, git_state, portable_argv, portable_path, sha256_file

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VERDICTS = ("supported", "partly supported", "not supported", "not resolved")  # stats.verdict: seeds cannot tell
EQUIVALENT = "equivalent within ±{margin:g}"  # a null that is the finding: the whole interval within the margin
CONLL_SPLITS = ("train.txt", "valid.txt", "test.txt")


def parse_args(name: str, doc: str, argv=None, *, real_data: bool = False, gpu: bool = False) -> argparse.Namespace:
    """``--quick``, ``--out`` and, with ``real_data``, ``--conll DIR`` and ``--embeddings FILE``; with ``gpu``,
    ``--gpu`` (time JAX on the first GPU as well).

    The default output folder is ``results/<name>`` (``results/<name>_conll`` with ``--conll``,
    ``results/<name>_gpu`` with ``--gpu``); with ``--quick`` it is a new temporary folder, and ``--out``
    under ``results/`` is refused.
    """
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds; writes to a temporary folder")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: results/{name}[_conll])")
    if real_data:
        parser.add_argument("--conll", type=Path, help="folder with CoNLL-2003 train.txt, valid.txt, test.txt (IOB2)")
        parser.add_argument(
            "--embeddings", type=Path, help="GloVe / word2vec text vectors that seed E, or a name: glove-6b-50d"
        )
    if gpu:
        parser.add_argument("--gpu", action="store_true", help="time JAX on the first GPU too (and GPU vs CPU)")
    args = parser.parse_args(argv)
    if not real_data:
        args.conll = args.embeddings = None
    args.gpu = bool(getattr(args, "gpu", False))
    if args.quick and args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix=f"{name}-quick-"))
    elif args.quick and args.out.resolve().is_relative_to(RESULTS.resolve()):
        parser.error(f"--quick writes tiny-size results; not under {portable_path(RESULTS)}/ (the committed ones)")
    args.out = args.out or RESULTS / (f"{name}_conll" if args.conll else f"{name}_gpu" if args.gpu else name)
    argv_text = map(shlex.quote, portable_argv(argv or []))
    args.command = " ".join(["python", f"experiments/{name}.py", *argv_text])
    args.git_at_start = git_state()  # the code this run runs: a commit made while it runs is not its code
    return args


# ----------------------------------------------------------------------------- data and training runs


class Corpus(NamedTuple):
    """Sentences of each split, pretrained (words, vectors) or None, and what it is."""

    train: list
    dev: list
    test: list
    pretrained: tuple | None
    source: str
    short: str  # "synthetic" or "CoNLL-2003"


def load_corpus(args, *, synthetic_vectors: bool = True) -> Corpus:
    """The ``--conll``/``--embeddings`` files, or the embedded synthetic corpus (and its vectors)."""
    if args.conll is None:
        corpus = synthetic.synthetic_corpus(seed=0)
        vectors = embeddings.load_pretrained(args.embeddings) if args.embeddings else None
        if vectors is None and synthetic_vectors:
            vectors = synthetic.synthetic_vectors()
        what = "with its synthetic word vectors" if vectors else "without pretrained vectors (E random)"
        return Corpus(
            corpus["train"], corpus["dev"], corpus["test"], vectors, f"the synthetic corpus {what}", "synthetic"
        )
    missing = [f for f in CONLL_SPLITS if not (args.conll / f).is_file()]
    if missing:
        raise SystemExit(
            f"error: --conll {args.conll}: missing {', '.join(missing)} (expected {', '.join(CONLL_SPLITS)})"
        )
    splits = [data.read_conll(args.conll / f) for f in CONLL_SPLITS]
    vectors = embeddings.load_pretrained(args.embeddings) if args.embeddings else None
    what = f"with {args.embeddings.name} ({len(vectors[0])} words)" if vectors else "without pretrained vectors"
    return Corpus(*splits, vectors, f"CoNLL-2003 ({portable_path(args.conll)}) {what}", "CoNLL-2003")


def prepare(corpus: Corpus, config: train.TrainConfig, train_sentences=None) -> pipeline.Prepared:
    """Windows for ``config``; ``train_sentences`` (a subset) replaces the training split."""
    sentences = corpus.train if train_sentences is None else train_sentences
    return pipeline.prepare_for(config, sentences, corpus.dev, corpus.test, corpus.pretrained)


def data_sizes(prepared: pipeline.Prepared, train_sentences: int) -> dict:
    """The sizes a result.json reports about its data."""
    return {
        "train_sentences": train_sentences,
        "train_windows": len(prepared.train.windows),
        "dev_windows": len(prepared.dev.windows),
        "vocab": len(prepared.vocab),
    }


class Run(NamedTuple):
    history: list  # metrics.jsonl: one dict per finished epoch
    summary: dict  # summary.json, or {"diverged": True, "message": ...}
    params: dict | None  # the best dev epoch's parameters (None if no epoch finished)
    model_cfg: model.ModelConfig


def train_run(config: train.TrainConfig, prepared: pipeline.Prepared, *, on_step=None) -> Run:
    """``train.train_and_evaluate`` quietly, in a temporary run directory that is removed after.

    A diverged run is no error here: ``summary["diverged"]`` says so and the epochs before count.
    """
    with tempfile.TemporaryDirectory(prefix="jaxbackprop-exp-") as tmp:
        try:
            summary = train.train_and_evaluate(
                config, prepared, tmp, progress=False, log=lambda *_: None, on_step=on_step
            )
            summary["diverged"] = False
        except train.TrainingDiverged as e:
            summary = {"diverged": True, "message": str(e)}
        history = files.read_jsonl(Path(tmp) / "metrics.jsonl")  # the finished epochs (none: empty)
        model_cfg = pipeline.model_config(config, prepared)
        params = rundir.load_params(tmp, model_cfg)[0] if history else None
    return Run(history, summary, params, model_cfg)


def train_table(configs, prepared) -> list:
    """Train every config (``sweep.train_configs``: rows differing only in rate / seed share one compiled
    program); per config its dev curve, the epoch it diverged in (or None) and its final params."""
    out = [None] * len(configs)
    for part, run, _, _ in sweep.train_configs(configs, prepared, chunk=1, devices=None, log=lambda *_: None):
        for k, j in enumerate(part):
            params = jax.tree.map(lambda x, k=k: x[k], run.params)
            out[j] = {"curve": run.curves[k], "diverged": run.diverged[k], "params": params}
    return out


# ----------------------------------------------------------------------------- result.json


def result_head(name: str, claim: str, config, corpus: Corpus | None = None, prepared=None, n_train=None) -> dict:
    """The entries every result.json starts with: what it is, its config (and the training config
    flat, as templates read it) and, for training experiments, the corpus and its sizes."""
    head = {"name": name, "claim": claim, "config": dataclasses.asdict(config)}
    if hasattr(config, "training"):
        head["training"] = train.flatten(config.training)
    if corpus is not None:
        head.update(corpus=corpus.source, corpus_short=corpus.short)
    if prepared is not None:
        head["sizes"] = data_sizes(prepared, n_train)
    return head


def verdict_of(parts) -> str:
    """The verdict on a claim from its ``parts``: each True (held), False (failed) or None (its interval
    straddles the bar: the seeds cannot tell, see ``stats.holds``).

    "supported" if all held; "not resolved" if none failed but some could not be told; "partly
    supported" if some held and some failed; "not supported" if some failed and none held.

    >>> verdict_of([True, True]), verdict_of([True, None]), verdict_of([True, False]), verdict_of([False, None])
    ('supported', 'not resolved', 'partly supported', 'not supported')
    """
    parts = [None if p is None else bool(p) for p in parts]
    if all(p is True for p in parts):
        return VERDICTS[0]
    if False not in parts:
        return VERDICTS[3]
    return VERDICTS[1] if True in parts else VERDICTS[2]


def corrected(comparisons: list, primary) -> list:
    """``comparisons`` with their roles, for a verdict that allows for how many were made.

    Each comparison is a dict with a unique ``name``, its ``bar`` and the paired interval of A - B
    (:func:`stats.paired`) with its ``side`` of the bar. A *primary* one (its name in ``primary``,
    the config's, fixed before the run) keeps the side of its own 95% interval. Every other one is
    *secondary*: its p-value against its bar is Holm-adjusted over the experiment's secondary
    comparisons (``p_holm``), and its ``side`` is that of the adjusted p (``side_uncorrected``: the
    plain interval's). Each gets ``role`` and ``p``.

    Raises:
      ValueError: a primary name that is no comparison's (a config's typo would leave the verdict unguarded).
    """
    names = [c["name"] for c in comparisons]
    if missing := [n for n in primary if n not in names]:
        raise ValueError(f"primary comparison(s) {missing} are not among the comparisons made: {names}")
    p = [stats.p_value(c, c["bar"]) for c in comparisons]
    secondary = [i for i, c in enumerate(comparisons) if c["name"] not in primary]
    adjusted = dict(zip(secondary, stats.holm([p[i] for i in secondary])))
    out = []
    for i, c in enumerate(comparisons):
        row = {**c, "role": "secondary" if i in adjusted else "primary", "p": p[i], "side_uncorrected": c["side"]}
        if i in adjusted:
            row |= {"p_holm": adjusted[i], "side": stats.side_of_p(c, adjusted[i], c["bar"])}
        out.append(row)
    return out


def with_margin(verdict: str, iv: dict, margin: float | None) -> str:
    """``verdict``, or :data:`EQUIVALENT` when a ``margin`` was set before the run and the whole interval
    ``iv`` of the primary difference lies within ± it: no difference that matters, a finding in itself.

    >>> with_margin("not resolved", {"low": -0.002, "high": 0.001}, 0.003)
    'equivalent within ±0.003'
    >>> with_margin("not resolved", {"low": -0.002, "high": 0.004}, 0.003), with_margin("supported", {}, None)
    ('not resolved', 'supported')
    """
    return EQUIVALENT.format(margin=margin) if margin is not None and stats.equivalent(iv, margin) else verdict


def is_verdict(verdict) -> bool:
    """One of :data:`VERDICTS`, or an :data:`EQUIVALENT` one."""
    return verdict in VERDICTS or (isinstance(verdict, str) and verdict.startswith(EQUIVALENT.split("{")[0]))


def write_result(args, result: dict, started: float) -> dict:
    """Add provenance (command, runtime, environment, data hashes) to ``result``; write result.json.

    ``result`` must hold ``name``, ``claim``, ``verdict`` (one of :data:`VERDICTS`, or :data:`EQUIVALENT`),
    ``seeds`` and ``plots`` (file names in the output folder).
    """
    missing = [k for k in ("name", "claim", "verdict", "seeds", "plots") if k not in result]
    if missing or not is_verdict(result["verdict"]):
        raise ValueError(f"result.json needs {missing or 'a verdict'} (verdict one of {VERDICTS})")
    result = {
        **result,
        "quick": bool(args.quick),
        "command": args.command,
        "runtime_s": round(time.perf_counter() - started, 2),
        "environment": run_environment(args),
        "load": load(),
        "data_files": data_files(args),
    }
    files.write_json(args.out / "result.json", plain(result))
    print(f"{result['name']}: {result['verdict']} ({args.out / 'result.json'})")
    return plain(result)


def run_environment(args) -> dict:
    """``provenance.environment()`` with the commit and dirtiness read when the run started (``parse_args``);
    ``git_at_end`` as well where the checkout changed while it ran."""
    env, start = environment(), args.git_at_start
    end = {k: env[k] for k in start}
    return {**env, **start} | ({"git_at_end": end} if end != start else {})


def load() -> dict:
    """How busy this machine was (1, 5, 15-minute load averages) and how many cores the run could use."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "usable_cpus": usable}


def data_files(args) -> dict:
    """The real data files a run read, with their SHA-256 (empty for the embedded corpus)."""
    out = {}
    if getattr(args, "conll", None):
        out["conll"] = {
            "path": portable_path(args.conll),
            "sha256": {f: sha256_file(args.conll / f) for f in CONLL_SPLITS},
        }
    if getattr(args, "embeddings", None):
        out["embeddings"] = vectors.source(args.embeddings)  # a file's path and sha256, or a named table's package
    return out


def plain(obj):
    """numpy scalars and arrays as JSON numbers and lists; NaN and inf as strings JSON can hold."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):  # numpy and JAX arrays
        return plain(np.asarray(obj).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else str(float(obj))
    return obj
