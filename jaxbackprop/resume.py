"""Resuming a run: continue it after its last recorded epoch, exactly as if it had never stopped.

Resuming first checks that the given configuration and data are exactly the recorded ones (only
``epochs`` may grow, where the schedule allows), then re-derives the run's files from its last
checkpoint. Nothing is written until every check has passed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxbackprop import checkpoint, files, model, pipeline
from jaxbackprop.config import MODEL_FIELDS, TrainConfig, flatten
from jaxbackprop.rundir import (
    OLD_PARAM_NAMES,
    RUN_FILES,
    RunDirError,
    data_fingerprint,
    read_config,
    read_vocab,
    refuse_other_kind,
    with_new_names,
)
from jaxbackprop.vocab import Vocab

# schedules whose rate at a step depends on the number of epochs: more epochs change the past ones
EPOCH_SPANNING_SCHEDULES = ("cosine", "warmup_cosine")


def check_resumable(
    run_dir: Path, config: TrainConfig, model_cfg: model.ModelConfig, prepared: pipeline.Prepared
) -> dict:
    """The run's config.json, once it is certain that ``config`` and ``prepared`` continue that run exactly."""
    refuse_other_kind(run_dir, "a training run")
    path = run_dir / "checkpoint.npz"
    if not path.is_file():
        if (run_dir / "config.json").exists():
            raise RunDirError(
                f"{path}: no checkpoint to resume from (no epoch of this run finished, or the file was removed); "
                f"nothing was changed; use --overwrite to train this run again from the start"
            )
        raise RunDirError(
            f"{path}: no checkpoint to resume from ({run_dir} holds no run); train without --resume to start one"
        )
    conf = read_config(run_dir)
    # model differences follow from the train ones; alone, they point at the data (vocabulary, vector width)
    recorded_model = with_new_names(conf["model"])
    problems = config_differences(_trained_for(path, conf["train"]), config) or _differences(
        recorded_model, dataclasses.asdict(model_cfg), "model."
    )
    problems += _data_differences(run_dir, conf, prepared)
    if problems:
        raise RunDirError(
            f"{run_dir}: cannot resume with other settings or data than the run's ({'; '.join(problems)}); "
            f"resume with the recorded ones, or start a new run with another --out or --overwrite"
        )
    return conf


def _trained_for(path: Path, section: dict) -> dict:
    """config.json's ``"train"`` section with the epochs the checkpoint was trained for: a resumed
    run's epochs are counted from its record, whatever config.json was edited to (the resume then
    rewrites config.json's epochs; checkpoints from before they recorded epochs keep config.json's)."""
    epochs = checkpoint.read_meta(path).get("epochs")
    return section if epochs is None else {**section, "epochs": epochs}


def config_differences(recorded: dict, config: TrainConfig) -> list[str]:
    """Why ``config`` cannot continue a run recorded with the TrainConfig fields ``recorded``.

    Every field must be equal, except ``epochs``, which may grow -- unless the schedule spans all
    epochs (cosine), where more epochs would change the learning rate of the epochs already trained.

    Args:
      recorded: the ``"train"`` section of a run's config.json (nested, or the flat one of older runs).
      config: the configuration given to resume it.

    Returns:
      One ``"field: run has X, given Y"`` per difference; empty when ``config`` continues the run.

    >>> from jaxbackprop.config import configure
    >>> run = dataclasses.asdict(configure(schedule="step", epochs=5))
    >>> config_differences(run, configure(schedule="step", epochs=8, activation="tanh"))
    ["activation: run has 'relu', given 'tanh'"]
    >>> config_differences(run, configure(schedule="step", epochs=3))
    ['epochs: run has 5, given 3 (epochs may only grow)']
    """
    recorded = flat_recorded(recorded)
    problems = _differences(recorded, flatten(config), skip=("epochs",))
    run_epochs = recorded.get("epochs")
    if config.epochs != run_epochs:
        if not isinstance(run_epochs, int) or config.epochs < run_epochs:
            problems.append(f"epochs: run has {run_epochs!r}, given {config.epochs!r} (epochs may only grow)")
        elif config.schedule in EPOCH_SPANNING_SCHEDULES:
            problems.append(
                f"epochs: run has {run_epochs!r}, given {config.epochs!r} (the {config.schedule} schedule spans "
                f"all epochs, so more would change the learning rate of the epochs already trained)"
            )
    return problems


def flat_recorded(section: dict) -> dict:
    """The flat ``{name: value}`` of a config.json ``"train"`` section: nested (``"model"`` inside),
    or flat with the old names of runs written before the casing -> features rename."""
    if isinstance(section.get("model"), dict):
        architecture = {k: v for k, v in section["model"].items() if k in MODEL_FIELDS}
        section = {**architecture, **{k: v for k, v in section.items() if k != "model"}}
    # runs from before the crf head could be trained record no head: they trained the softmax one
    return {"head": "softmax", **with_new_names(section)}


_ABSENT = object()


def _differences(recorded: dict, given: dict, prefix: str = "", skip=()) -> list[str]:
    def show(value):
        return "no value" if value is _ABSENT else repr(value)

    names = [n for n in dict.fromkeys([*given, *recorded]) if n not in skip]
    pairs = [(n, recorded.get(n, _ABSENT), given.get(n, _ABSENT)) for n in names]
    return [f"{prefix}{n}: run has {show(a)}, given {show(b)}" for n, a, b in pairs if a != b]


def _data_differences(run_dir: Path, conf: dict, prepared: pipeline.Prepared) -> list[str]:
    problems = []
    vocab = read_vocab(run_dir)
    if vocab != prepared.vocab:
        problems.append(f"vocab.json: {_vocab_difference(vocab, prepared.vocab)}")
    if list(conf["tags"]) != list(prepared.tags):
        problems.append(f"tags: run has {conf['tags']}, given {list(prepared.tags)}")
    if problems:  # the windows hold word and tag ids, so every fingerprint follows those
        return problems
    recorded = conf.get("data", {})  # runs from before the fingerprints were recorded have none
    for split in ("train", "dev", "test"):
        given = data_fingerprint(getattr(prepared, split))
        if split in recorded and recorded[split] != given:
            problems.append(f"{split} data: run has fingerprint {recorded[split]}, given {given}")
    return problems


def _vocab_difference(run: Vocab, given: Vocab) -> str:
    for what, a, b in (("words", run.words, given.words), ("suffixes", run.suffixes, given.suffixes)):
        if a != b:
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            first = [repr(s[i]) if i < len(s) else "the end" for s in (a, b)]
            return f"run has {len(a)} {what}, given {len(b)}, first different at {i} ({first[0]} vs {first[1]})"
    return f"suffix_len: run has {run.suffix_len}, given {given.suffix_len}"


def reopen_run(run_dir: Path, conf: dict, config: TrainConfig, template, base=None):
    """``((params, opt_state), history, best)`` after the last recorded epoch; re-derives metrics.jsonl
    (and config.json's epochs, the one change :func:`config_differences` allows) from the checkpoint.
    ``base``: what the checkpoint's state was stored against (:func:`jaxbackprop.rundir.state_base`)."""
    state, meta = checkpoint.load_tree(run_dir / "checkpoint.npz", template, renamed=OLD_PARAM_NAMES, base=base)
    history = _recorded_history(run_dir, meta)
    _check_best_file(run_dir, meta["best"], meta["epoch"])
    # checks done: from here on, writes
    for name in RUN_FILES:
        files.remove_temporaries(run_dir / name)
    if conf["train"]["epochs"] != config.epochs:
        files.write_json(run_dir / "config.json", {**conf, "train": {**conf["train"], "epochs": config.epochs}})
    files.write_jsonl(run_dir / "metrics.jsonl", history)
    return state, history, meta["best"]


def _recorded_history(run_dir: Path, meta: dict) -> list[dict]:
    """Every recorded epoch's metrics row: the checkpoint's own, or -- in a checkpoint written before
    it held them -- metrics.jsonl's rows up to its epoch."""
    history, source = meta.get("history"), run_dir / "checkpoint.npz"
    if history is None:
        source = run_dir / "metrics.jsonl"
        history = [r for r in files.read_jsonl(source) if r["epoch"] <= meta["epoch"]]
    epochs = [r.get("epoch") for r in history]
    if epochs != list(range(1, meta["epoch"] + 1)):
        raise RunDirError(
            f"{source}: records the metrics of epochs {epochs}, but checkpoint.npz is after epoch {meta['epoch']}; "
            f"the run cannot be resumed with rows missing"
        )
    return history


def _check_best_file(run_dir: Path, best: dict, epoch: int) -> None:
    """best.npz holds the recorded best epoch, or the next one (killed between it and checkpoint.npz)."""
    path = run_dir / "best.npz"
    if not path.is_file():
        raise RunDirError(
            f"{path}: missing, but checkpoint.npz records the best dev F1 at epoch {best['epoch']}; "
            f"those parameters cannot be recovered, so the run cannot be resumed"
        )
    saved = checkpoint.read_meta(path).get("epoch")
    if saved not in (best["epoch"], epoch + 1):
        raise RunDirError(
            f"{path}: holds epoch {saved}, but checkpoint.npz records the best dev F1 at epoch {best['epoch']}; "
            f"it belongs to another run, so this one cannot be resumed"
        )
