"""What every experiment script shares: ``--quick``/``--out``, median timing, and the result files.

Each ``experiments/eNN_<name>.py`` measures one claim of the lecture and writes, into
``experiments/results/eNN_<name>/`` (or ``--out``):

* ``result.json`` -- the numbers first: the config, the measurements, the claim and the verdict,
  ``environment`` (device and versions), the exact ``command`` that made it and, on real data,
  the ``data`` files' SHA-256. Paths are recorded as :mod:`jaxbackprop.provenance` writes them:
  relative to the project root when inside it, else by name -- never this machine's layout;
* ``*.png`` -- plots drawn from the numbers in ``result.json`` (never the other way round);
* ``section.md`` -- a short markdown section that ``make_results.py`` gathers into RESULTS.md.

All files are written atomically (temporary file, then rename), so an interrupted run never
leaves a half-written result behind.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxbackprop import checkpoint, data, embeddings, synthetic, train
from jaxbackprop.provenance import portable_argv, portable_path, sha256_file

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VERDICTS = ("supported", "partly supported", "not supported")


def parse_args(name: str, doc: str, argv=None, *, real_data: bool = False) -> argparse.Namespace:
    """``--quick`` (seconds, for the smoke test) and ``--out`` (default results/<name>).

    With ``real_data`` the script also takes ``--conll DIR`` (CoNLL-2003 ``train.txt``,
    ``valid.txt``, ``test.txt``) and ``--embeddings FILE``; on real data the default output folder
    is ``results/<name>_conll``, so the synthetic and the real-data results live side by side.
    """
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the smoke test)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: results/{name}, or results/{name}_conll)")
    if real_data:
        parser.add_argument("--conll", type=Path, default=None,
                            help="folder holding CoNLL-2003 train.txt, valid.txt, test.txt (IOB2); default: the embedded synthetic corpus")
        parser.add_argument("--embeddings", type=Path, default=None,
                            help="GloVe / word2vec text vectors that seed E (default: synthetic vectors, or none with --conll)")  # fmt: skip
    args = parser.parse_args(argv)
    if not real_data:
        args.conll = args.embeddings = None
    args.out = args.out or RESULTS / (f"{name}_conll" if args.conll else name)
    args.command = " ".join(["python", f"experiments/{name}.py", *map(shlex.quote, portable_argv(argv or []))]).strip()
    return args


# ----------------------------------------------------------------------------- data and training runs


CONLL_SPLITS = ("train.txt", "valid.txt", "test.txt")


class Corpus(NamedTuple):
    """Sentences of each split, pretrained (words, vectors) or None, and a line saying what it is."""

    train: list
    dev: list
    test: list
    pretrained: tuple | None
    source: str


def load_corpus(args) -> Corpus:
    """The corpus an experiment runs on: ``--conll``/``--embeddings`` files, or the embedded default."""
    if args.conll is None:
        corpus = synthetic.synthetic_corpus(seed=0)
        pretrained = embeddings.read_embeddings(args.embeddings) if args.embeddings else synthetic.synthetic_vectors()
        return Corpus(corpus["train"], corpus["dev"], corpus["test"], pretrained, "the embedded synthetic corpus and its synthetic word vectors")
    missing = [f for f in CONLL_SPLITS if not (args.conll / f).is_file()]
    if missing:
        raise SystemExit(f"error: --conll {args.conll}: missing {', '.join(missing)} (expected {', '.join(CONLL_SPLITS)})")
    train_s, dev_s, test_s = (data.read_conll(args.conll / f) for f in CONLL_SPLITS)
    pretrained = embeddings.read_embeddings(args.embeddings) if args.embeddings else None
    vectors = f" with {args.embeddings.name} ({len(pretrained[0])} words)" if pretrained else " without pretrained vectors"
    return Corpus(train_s, dev_s, test_s, pretrained, f"CoNLL-2003 ({portable_path(args.conll)}){vectors}")


def prepare(corpus: Corpus, cfg: train.TrainConfig, train_sentences=None) -> train.Prepared:
    """Windows for ``cfg`` (window, min_count, seed, suffixes); ``train_sentences`` replaces the training split."""
    sentences = corpus.train if train_sentences is None else train_sentences
    return train.prepare_for(cfg, sentences, corpus.dev, corpus.test, corpus.pretrained)


def corpus_fields(args, corpus: Corpus, prepared: train.Prepared, subset=None) -> dict:
    """The ``corpus``, ``corpus_short`` and ``sizes`` entries of a result.json (``subset``: the training
    sentences actually used, when fewer than the corpus has)."""
    return {
        "corpus": corpus.source, "corpus_short": "CoNLL-2003" if args.conll else "synthetic corpus",
        "sizes": {"train_sentences": len(subset) if subset is not None else len(corpus.train), "train_windows": len(prepared.train.windows),
                  "dev_windows": len(prepared.dev.windows), "vocab": len(prepared.vocab)},
    }  # fmt: skip


def train_run(cfg: train.TrainConfig, prepared: train.Prepared) -> tuple[list, dict]:
    """``train.train_and_evaluate`` quietly in a temporary run directory: (per-epoch history, summary).

    A diverged run is not an error here: it returns the epochs before divergence and
    ``summary["diverged"] = True``.
    """
    with tempfile.TemporaryDirectory(prefix="jaxbackprop-exp-") as tmp:
        try:
            summary = train.train_and_evaluate(cfg, prepared, tmp, progress=False, log=lambda *_: None)
            summary["diverged"] = False
        except train.TrainingDiverged as e:
            summary = {"diverged": True, "message": str(e)}
        history = checkpoint.read_jsonl(Path(tmp) / "metrics.jsonl")
    return history, summary


# ----------------------------------------------------------------------------- timing


def _calls_for(fn, min_time: float) -> int:
    """How many calls of ``fn`` make one timed repeat last at least ``min_time`` seconds."""
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    return max(1, math.ceil(min_time / once))


def time_round_robin(fns: dict, *, repeats: int, min_time: float = 0.02, warmup: int = 2) -> dict:
    """Median seconds per call of each ``fn`` (which must block until its result is ready).

    Each fn is warmed up (``warmup`` calls: compiles and caches settle), then ``repeats`` rounds run one
    repeat of every fn in turn, so load from other processes on a shared machine lands on all of
    them alike. A repeat runs the fn enough times to last ``min_time``.

    Returns:
      ``{name: {"median_s", "q1_s", "q3_s", "calls_per_repeat", "repeats"}}``.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    calls = {name: _calls_for(fn, min_time) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - t) / calls[name])
    out = {}
    for name, ts in times.items():
        q1, q3 = np.percentile(ts, [25, 75])
        out[name] = {"median_s": statistics.median(ts), "q1_s": float(q1), "q3_s": float(q3),
                     "calls_per_repeat": calls[name], "repeats": repeats}  # fmt: skip
    return out


def roundoff_tolerance(dtype, n_terms: int, scale: float, k: float = 4.0, worst_case: bool = False) -> float:
    """How far two evaluations of the same sum may differ in ``dtype``: ``k eps sqrt(n_terms) scale``.

    Two code paths (or two machines: another blocking, SIMD width or reduction tree) add the same
    ``n_terms`` terms of magnitude up to ``scale`` in different orders. Each addition rounds to
    within eps/2 of its result, so the two differ by at most about ``eps n_terms scale`` (the
    worst case, ``worst_case=True``; Higham, *Accuracy and Stability of Numerical Algorithms*, 4.2);
    errors of random sign grow like a random walk, ``eps sqrt(n_terms) scale`` (the default).
    ``k`` is the safety factor. Bit-identity is expected only where it is the claim.

    >>> f"{roundoff_tolerance(np.float32, 100, 1.0):.2e}"
    '4.77e-06'
    """
    growth = n_terms if worst_case else math.sqrt(n_terms)
    return k * float(np.finfo(dtype).eps) * max(growth, 1.0) * scale


def loglog_slope(x, y) -> float:
    """Least-squares slope of log10(y) against log10(x): the power p in y ~ x^p."""
    x, y = np.log10(np.asarray(x, float)), np.log10(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0])


# ----------------------------------------------------------------------------- result files


def section(*, number: int, title: str, claim: str, measured: list, verdict: str, why: str, plots: list, command: str) -> str:
    """The markdown section of one experiment; plot paths are relative to its own folder."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    lines = [f"## E{number:02d}. {title}", "", f"**Lecture's claim.** {claim}", "", "**Measured.**", ""]
    lines += [f"- {m}" for m in measured]
    lines += ["", f"**Verdict: {verdict}.** {why}", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in plots] + ([""] if plots else [])
    return "\n".join(lines + ["```bash", command, "```", ""])


def write_results(args, result: dict, section_md: str, started: float) -> dict:
    """Add environment, command and runtime to ``result``; write result.json and section.md."""
    if result.get("verdict") not in VERDICTS:
        raise ValueError(f"result['verdict'] must be one of {VERDICTS}, got {result.get('verdict')!r}")
    result = {**result, "quick": bool(args.quick), "command": args.command, "runtime_s": round(time.perf_counter() - started, 2),
              "environment": train.environment(), "host": host()}  # fmt: skip
    if data_files := data_fingerprints(args):
        result["data"] = data_files
    checkpoint.write_json(args.out / "result.json", _plain(result))
    checkpoint.write_text(args.out / "section.md", section_md)
    return result


def data_fingerprints(args) -> dict:
    """The real data files a run read, as ``{"conll": {"path", "sha256": {split: hex}}, "embeddings": {...}}``.

    Paths as :func:`jaxbackprop.provenance.portable_path` records them; the hashes say which data
    it was wherever it lay. Empty for the embedded synthetic corpus.
    """
    out = {}
    if getattr(args, "conll", None):
        out["conll"] = {"path": portable_path(args.conll), "sha256": {f: sha256_file(args.conll / f) for f in CONLL_SPLITS}}
    if getattr(args, "embeddings", None):
        out["embeddings"] = {"path": portable_path(args.embeddings), "sha256": sha256_file(args.embeddings)}
    return out


def host() -> dict:
    """The CPU this ran on and how busy it was: timings on a shared machine need both."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model or platform.processor() or None, "usable_cpus": usable, "load_average": load}


def _plain(obj):
    """numpy scalars and arrays as JSON numbers and lists; NaN and inf as strings JSON can hold."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else str(float(obj))
    return obj


def fmt(x: float, digits: int = 3) -> str:
    """A number for prose: 3 significant digits, scientific notation outside [1e-3, 1e5)."""
    x = float(x)
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 0)}e}"
