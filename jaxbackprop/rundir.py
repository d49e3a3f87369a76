"""A run directory: the files a training run writes, the check that keeps a run from being lost,
and loading a finished run back (resuming one: :mod:`jaxbackprop.resume`).

A run's size follows what training changed, not the vocabulary: when E starts from an installed
table (``--embeddings glove-6b-50d``), ``initial_E.npz`` records the initial E as row numbers into
that table (plus the rows drawn at random), best.npz and checkpoint.npz store E as the rows that
differ from it, and the optimizer state as the rows that differ from its fresh, constant value
(:func:`jaxbackprop.checkpoint.save_tree`'s base). Loading rebuilds every array bit for bit from the
installed table, whose sha256 must be the recorded one.

A run writes only :data:`RUN_FILES`; a directory holding any of :data:`RESULT_FILES` is not
replaced unasked. Run directories written before the casing -> features rename (config.json with
``casing_dim``/``casing_size`` and a flat ``"train"`` section; checkpoints with ``"Ecase"``) still load.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
from pathlib import Path

import jax
import numpy as np

from jaxbackprop import checkpoint, coverage, data, files, model, pipeline, vectors
from jaxbackprop.config import TrainConfig, configure
from jaxbackprop.provenance import environment, portable_argv
from jaxbackprop.vocab import Vocab


class RunDirError(ValueError):
    """A run directory cannot be used as asked: it holds another run, lacks a file, or records other
    settings or data than the given ones. The message is one sentence that names the path."""


# Every file a run writes; nothing else in a run directory is ever touched. A directory holding any
# of RESULT_FILES holds a run that training must not replace unasked (vocab.json and the plot are
# remade from the data and the metrics).
RUN_FILES = (
    "checkpoint.npz",
    "best.npz",
    "metrics.jsonl",
    "summary.json",
    "learning_curve.png",
    "config.json",
    "vocab.json",
    "initial_E.npz",
)
INITIAL_E = "initial_E.npz"  # only when E starts from an installed table: E's rows are stored by reference to it
RESULT_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "best.npz", "summary.json")
# what a sweep writes (jaxbackprop.sweep_report); config.json is the one name both write
SWEEP_FILES = ("results.csv", "results.json", "curves.json", "config.json", "curves.png", "heatmap.png")
# names that older run directories recorded: config fields, and parameter keys in checkpoints
OLD_NAMES = {"casing_dim": "feature_dim", "casing_size": "feature_vocab_size"}
OLD_PARAM_NAMES = {"Ecase": "F"}


# ----------------------------------------------------------------------------- starting a run


def init_run_params(config: TrainConfig, prepared: pipeline.Prepared):
    """``(model_cfg, params)``: the sized model config and the run's initial parameters."""
    model_cfg = pipeline.model_config(config, prepared)
    E = pipeline.initial_embeddings(prepared, config.seed)  # the seed draws E's rows without a vector too
    return model_cfg, compiled_init_params(jax.random.key(config.seed), model_cfg, config.init, E)


def compiled_init_params(key, model_cfg: model.ModelConfig, init: str, embeddings=None):
    """``model.init_params`` as one compiled program (equal to 1 ulp: XLA fuses the N(0, 0.01^2)
    scaling); run eagerly, each random op would compile on its own."""
    return _compiled_init_params(key, embeddings, model_cfg, init)


@functools.partial(jax.jit, static_argnames=("model_cfg", "init"))
def _compiled_init_params(key, embeddings, model_cfg, init):
    return model.init_params(key, model_cfg, init=init, embeddings=embeddings)


def check_writable(run_dir: Path, overwrite: bool) -> None:
    """Refuse a ``run_dir`` that is a file or holds a sweep, or holds a run's results unless ``overwrite``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory; choose another --out")
    refuse_other_kind(run_dir, "a training run")
    found = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if found and not overwrite:
        raise RunDirError(
            f"{run_dir}: already holds a run ({', '.join(found)}); use --resume to continue it, "
            f"--overwrite to replace its files, or another --out (alias --run-dir)"
        )


def refuse_other_kind(directory: Path, mine: str) -> None:
    """Refuse a ``directory`` holding the other kind of results than ``mine`` ("a training run" or
    "a sweep"): neither command replaces (or continues) the other's, not even with --overwrite."""
    other = "a sweep" if mine == "a training run" else "a training run"
    found = holds(directory, other)
    if found:
        raise RunDirError(
            f"{directory}: holds {other} ({', '.join(found)}), not {mine}; it is not replaced, even with "
            f"--overwrite: choose another --out"
        )


def holds(directory: Path, kind: str) -> list[str]:
    """The files in ``directory`` that only ``kind`` ("a training run" or "a sweep") writes, and
    config.json if its content is that kind's record (a run's has "train", a sweep's "table")."""
    names, key = (RESULT_FILES, "train") if kind == "a training run" else (SWEEP_FILES, "table")
    found = [n for n in names if n != "config.json" and (directory / n).is_file()]
    if key in _json_keys(directory / "config.json"):
        found.insert(0, "config.json")
    return found


def _json_keys(path: Path) -> set:
    """The top-level keys of a JSON object file; none for a missing, unreadable or other file."""
    try:
        obj = files.read_json(path)
    except (OSError, ValueError):
        return set()
    return set(obj) if isinstance(obj, dict) else set()


def start_run(run_dir: Path, config: TrainConfig, model_cfg: model.ModelConfig, prepared: pipeline.Prepared) -> None:
    """Delete the run files of an earlier run in ``run_dir`` (only those); write config.json and vocab.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:  # checkpoint.npz first: a kill midway leaves nothing to resume by mistake
        (run_dir / name).unlink(missing_ok=True)
        files.remove_temporaries(run_dir / name)
    # vocab.json and initial_E.npz first: a directory with a config.json has them
    files.write_text(run_dir / "vocab.json", prepared.vocab.to_json())
    if stores_initial_E(prepared):
        write_initial_E(run_dir, prepared, pipeline.initial_embeddings(prepared, config.seed))
    files.write_json(
        run_dir / "config.json",
        {
            "train": dataclasses.asdict(config),
            "model": dataclasses.asdict(model_cfg),
            "tags": list(prepared.tags),
            "data": {split: data_fingerprint(getattr(prepared, split)) for split in ("train", "dev", "test")},
            "embedding_coverage": prepared.coverage,
            "embeddings": prepared.embeddings_source,  # the pretrained table's identity (name, version, sha256)
            "vocabulary": coverage.word_origins(prepared.vocab, prepared.train.windows, prepared.pretrained_rows),
            "environment": environment(),
            "command": portable_argv(sys.argv),
        },
    )


def data_fingerprint(ds: data.Dataset | None) -> str | None:
    """A short hash of a split's arrays (None for a missing split), so a resumed run can tell
    that it is given the recorded data: a different dev or test file can share the vocabulary."""
    if ds is None:
        return None
    digest = hashlib.sha256()
    for a in (ds.windows, ds.features, ds.labels, ds.sentence_lengths):
        if a is not None:
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:16]


def commit_epoch(run_dir: Path, params, opt_state, history: list, best: dict, epochs: int, base=None) -> None:
    """Record a finished epoch: ``checkpoint.npz`` is the record (state, every epoch's metrics row,
    the best epoch, the run's number of ``epochs``), replaced by one atomic rename; ``metrics.jsonl``
    is a readable copy of its rows. ``base``: :func:`state_base`, what the state is stored against."""
    meta = {"epoch": history[-1]["epoch"], "epochs": epochs, "best": best, "history": history}
    checkpoint.save_tree(run_dir / "checkpoint.npz", (params, opt_state), meta, base=base)
    files.write_jsonl(run_dir / "metrics.jsonl", history)


# ----------------------------------------------------------------------------- E by reference to its table


def stores_initial_E(prepared: pipeline.Prepared) -> bool:
    """Whether a run of ``prepared`` keeps ``initial_E.npz``: E was seeded from an installed package's
    table, whose identity (sha256) can be checked when the run is loaded again."""
    source = prepared.embeddings_source or {}
    return prepared.table_rows is not None and source.get("name") in vectors.PACKAGES


def write_initial_E(run_dir: Path, prepared: pipeline.Prepared, E) -> None:
    """``initial_E.npz``: the run's initial ``E`` as the table row of each vocabulary id (-1: none) and the
    rows drawn at random for the others, with the table's identity (``prepared.embeddings_source``)."""
    E, rows = np.asarray(E, np.float32), np.asarray(prepared.table_rows, np.int32)
    drawn = np.ascontiguousarray(E[rows < 0])
    meta = {"embeddings": prepared.embeddings_source, "shape": list(E.shape), "drawn": len(drawn)}
    checkpoint.save_tree(run_dir / INITIAL_E, {"drawn": drawn, "table_rows": rows}, meta)


def initial_E(run_dir) -> np.ndarray | None:
    """The run's initial E (read-only), rebuilt from ``initial_E.npz`` and the installed table; None for a
    run without that file (E stored whole).

    Raises:
      RunDirError: the table is not installed, or the installed one is not the recorded one (sha256),
        or ``initial_E.npz`` is damaged; one line naming the package and what to install.
    """
    path = Path(run_dir) / INITIAL_E
    if not path.is_file():
        return None
    meta = checkpoint.read_meta(path)
    try:
        (V, d), k, source = meta["shape"], int(meta["drawn"]), meta["embeddings"]
        template = {
            "drawn": jax.ShapeDtypeStruct((k, d), np.float32),
            "table_rows": jax.ShapeDtypeStruct((V,), np.int32),
        }
    except (KeyError, TypeError, ValueError):
        raise RunDirError(f"{path}: not a record of an initial E (its meta lacks shape, drawn or embeddings)") from None
    tree, _ = checkpoint.load_tree(path, template)
    rows, drawn = np.asarray(tree["table_rows"]), np.asarray(tree["drawn"])
    table = _recorded_table(path, source)
    if (rows < 0).sum() != k or rows.max(initial=-1) >= len(table) or table.shape[1] != d:
        raise RunDirError(f"{path}: its row numbers do not fit the {source['name']} table of shape {table.shape}")
    E = np.empty((V, d), np.float32)
    E[rows >= 0] = table[rows[rows >= 0]]
    E[rows < 0] = drawn
    E.setflags(write=False)  # a base: its fingerprint is computed once
    return E


def _recorded_table(path: Path, source: dict) -> np.ndarray:
    """The installed table ``source`` names (memory-mapped), once its sha256 is the recorded one."""
    name, package, version = source.get("name"), source.get("package"), source.get("version")
    install = f"pip install {package}{f'=={version}' if version else ''}"
    what = f"{path}: the run's E is stored as the rows training changed from the {name} table of {package} {version}"
    if name not in vectors.PACKAGES:
        raise RunDirError(f"{what}, a table this version of jaxbackprop does not know")
    try:
        folder = vectors.package_dir(name)
    except vectors.VectorsError:
        raise RunDirError(f"{what}, which is not installed: {install}") from None
    file = folder / vectors.PACKAGES[name].vectors
    installed = vectors.cached_sha256(file) if file.is_file() else None
    if installed != source.get("sha256"):
        found = f"sha256 {installed[:12]}" if installed else f"no {file.name}"
        raise RunDirError(
            f"{what} (sha256 {str(source.get('sha256'))[:12]}), but the installed one differs ({found}): {install}"
        )
    return vectors.read_table(file)


def state_base(params, opt_state, E0=None) -> tuple:
    """What best.npz and checkpoint.npz store the run's state against (:func:`checkpoint.save_tree`'s base):
    ``(params base, optimizer state base)``, E's initial value ``E0`` (None: E stored whole) and the
    fresh optimizer state's constant leaves (Adam's zero moments: untouched rows stay zero)."""
    return params_base(params, E0), checkpoint.constant_leaves(opt_state)


def params_base(params, E0=None) -> dict:
    """The params' base: ``E0`` for E (None: stored whole, as every other leaf)."""
    return {k: (E0 if k == "E" else None) for k in params}


# ----------------------------------------------------------------------------- reloading a run


def with_new_names(fields: dict) -> dict:
    """``fields`` with the names older run directories recorded (:data:`OLD_NAMES`) replaced by today's."""
    return {OLD_NAMES.get(k, k): v for k, v in fields.items()}


def load_run(run_dir):
    """``(config, model_cfg, vocab, tags, best_params)`` of a finished (or running) run.

    Raises:
      FileNotFoundError: config.json, vocab.json or best.npz is missing (the message names it).
      ValueError: one of them is malformed (the message names it).
    """
    run_dir = Path(run_dir)
    conf = read_config(run_dir)
    try:
        config, model_cfg = config_from_json(conf["train"]), model.ModelConfig(**with_new_names(conf["model"]))
    except (TypeError, ValueError) as e:  # fields of another version of jaxbackprop
        raise RunDirError(f"{run_dir / 'config.json'}: not a configuration this version can read ({e})") from None
    vocab = read_vocab(run_dir)
    params, _ = load_params(run_dir, model_cfg)
    return config, model_cfg, vocab, tuple(conf["tags"]), params


def config_from_json(section: dict) -> TrainConfig:
    """The TrainConfig of a config.json ``"train"`` section (nested, or the flat one of older runs)."""
    if isinstance(section.get("model"), dict):
        rest = {k: v for k, v in section.items() if k != "model"}
        return TrainConfig(model=model.ModelConfig(**with_new_names(section["model"])), **rest)
    return configure(**with_new_names(section))


def read_config(run_dir) -> dict:
    """The parsed config.json of a run.

    Raises:
      FileNotFoundError: there is no config.json (the message names it).
      ValueError: it is not JSON, or not a run's configuration (RunDirError); the message names it.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file -- {run_dir} is not a jaxbackprop run directory")
    conf = files.read_json(path)
    missing = [key for key in ("train", "model", "tags") if not isinstance(conf, dict) or key not in conf]
    if missing:
        raise RunDirError(f"{path}: not a jaxbackprop run configuration (no {', '.join(missing)} entry)")
    return conf


def read_vocab(run_dir) -> Vocab:
    """The vocabulary of a run (vocab.json); errors as :func:`read_config`'s."""
    path = Path(run_dir) / "vocab.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file -- the run's vocabulary is missing")
    try:
        return Vocab.from_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise RunDirError(f"{path}: not a jaxbackprop vocabulary ({' '.join(str(e).split())})") from None


def load_params(run_dir, model_cfg: model.ModelConfig, E0=None):
    """``(params, meta)`` of the run's best epoch (best.npz), in the shapes of ``model_cfg``; E rebuilt
    from its initial value (``E0``, else :func:`initial_E`) if it is stored as the rows that changed."""
    path = Path(run_dir) / "best.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no best checkpoint yet (did an epoch finish?)")
    template = jax.eval_shape(lambda: model.init_params(jax.random.key(0), model_cfg))
    base = params_base(template, E0) if E0 is not None else lambda: _needed_base(run_dir, template)
    return checkpoint.load_tree(path, template, renamed=OLD_PARAM_NAMES, base=base)


def _needed_base(run_dir, template) -> dict:
    """The params' base, where a file stores E as the rows that changed from it."""
    E0 = initial_E(run_dir)
    if E0 is None:
        raise RunDirError(
            f"{Path(run_dir) / INITIAL_E}: missing, but the run stores E as the rows training changed from the "
            f"initial E it records; the run cannot be loaded without it"
        )
    return params_base(template, E0)
