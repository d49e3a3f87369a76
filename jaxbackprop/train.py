"""Training: the epoch loop, keeping the best epoch on dev F1, and the run's summary.

One run is :func:`train_and_evaluate`: data from :mod:`jaxbackprop.pipeline`, a jitted step from
:mod:`jaxbackprop.step`, dev and test scores from :mod:`jaxbackprop.evaluate`, and every file
written through :mod:`jaxbackprop.rundir`. The configuration is a :class:`TrainConfig` (built
with :func:`configure`), which holds the model's :class:`~jaxbackprop.model.ModelConfig`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import checkpoint, compiled_epoch, dirlock, files, optim, parallel, pipeline, rundir
from jaxbackprop.config import TrainConfig, configure, flatten  # noqa: F401 (the API: train.TrainConfig, ...)
from jaxbackprop.evaluate import evaluate
from jaxbackprop.resume import check_resumable, reopen_run
from jaxbackprop.step import make_step


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def train_and_evaluate(
    config: TrainConfig,
    prepared: pipeline.Prepared,
    run_dir,
    *,
    resume=False,
    overwrite=False,
    progress=True,
    log=print,
    on_step=None,
    devices=None,
) -> dict:
    """Train on ``prepared.train``, select the best epoch on dev F1, evaluate it on test.

    Writes into ``run_dir``: ``config.json``, ``vocab.json``, ``metrics.jsonl`` (one object per
    epoch), ``checkpoint.npz`` (params + optimizer state after the last finished epoch, for
    ``resume``), ``best.npz`` (params of the best dev epoch), ``learning_curve.png`` and
    ``summary.json`` (:data:`jaxbackprop.rundir.RUN_FILES`); any other file is left alone.

    An epoch is recorded by one atomic rename: ``checkpoint.npz``'s meta holds every epoch's
    metrics row and the best epoch, and ``metrics.jsonl`` is rewritten from it (again on resume).
    ``best.npz`` is written just before it, so a kill in between leaves it one epoch ahead, which
    the resumed run rewrites identically (replaying an epoch is deterministic). Killed at any
    instant and resumed, a run ends with the files of an uninterrupted run, timings aside.

    Args:
      config: the training configuration.
      prepared: the data, from :func:`jaxbackprop.pipeline.prepare_for`.
      run_dir: the run's directory; created if needed.
      resume: continue the run in ``run_dir`` after its last recorded epoch. ``config`` and the
        data must be the recorded ones, except that ``epochs`` may grow (see
        :func:`jaxbackprop.resume.config_differences`).
      overwrite: replace the run files of a run already in ``run_dir`` (without it, a directory
        holding any of :data:`jaxbackprop.rundir.RESULT_FILES` is refused).
      progress: show a progress bar per epoch (on a terminal).
      log: called with one readable line per epoch.
      on_step: passed to :func:`run_epoch` (it makes the epoch a Python loop).
      devices: None (one device), an int N or ``"all"``: each batch is split over that many
        devices (:func:`jaxbackprop.parallel.mesh_for`), the parameters copied to each; the
        result equals one device's within float round-off. With several processes
        (``jax.distributed``, see :mod:`jaxbackprop.parallel`) every process calls this in
        lock-step; only process 0 writes ``run_dir`` (and evaluates on test), the others return
        ``best_epoch``, ``dev_f1`` and ``epochs_run``. ``resume`` needs ``run_dir`` readable by
        every process.

    Returns:
      The summary, also written to ``summary.json``.

    Raises:
      RunDirError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` was given, or
        holds a sweep; or ``resume`` finds no checkpoint, or other settings or data than the
        recorded ones. Nothing has been written then.
      DirectoryInUse: another process is writing ``run_dir`` (:mod:`jaxbackprop.dirlock`).
      TrainingDiverged: the loss became non-finite; the last good checkpoint, if any, is kept.
    """
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ValueError(
            f"{run_dir}: --resume and --overwrite exclude each other (one continues the run, the other replaces it)"
        )
    writer = jax.process_index() == 0  # with several processes, one writes the run's files
    # one process at a time in a run directory: the lock comes before every check and every write
    with dirlock.locked(run_dir, log) if writer else contextlib.nullcontext(), _disk_full_is_resumable(run_dir):
        return _train(config, prepared, run_dir, writer, resume, overwrite, progress, log, on_step, devices)


def _train(config, prepared, run_dir: Path, writer: bool, resume, overwrite, progress, log, on_step, devices) -> dict:
    model_cfg = pipeline.model_config(config, prepared)
    # every check comes before anything is computed or written, so a refused call changes nothing
    optim.frozen_rows(config, prepared.pretrained_rows)  # "pretrained_frozen" without vectors is refused here
    if resume:
        conf = check_resumable(run_dir, config, model_cfg, prepared)
    elif writer:  # on a shared disk the others could already see process 0's new files
        rundir.check_writable(run_dir, overwrite)
    # one row per training example: a window, or a padded sentence for the crf head (in length buckets)
    train_rows = pipeline.training_rows(prepared.train, model_cfg)
    mesh, batch_rows = _mesh_and_batch_rows(devices, config.batch_size, train_rows, on_step, log)
    _, params = rundir.init_run_params(config, prepared)
    steps_per_epoch = pipeline.steps_per_epoch(train_rows, batch_rows)
    # the loop draws its own bar; a compiled epoch moves this one from inside, and only on a terminal
    show = progress and on_step is None and sys.stderr.isatty()
    bar = _ProgressBar(steps_per_epoch) if show else None
    rows = prepared.pretrained_rows  # what embeddings_mode="pretrained_frozen" keeps fixed
    if on_step is None:  # the whole epoch as one compiled program, the training split on the device
        opt_state, step = compiled_epoch.compile_epoch(
            config,
            model_cfg,
            params,
            steps_per_epoch,
            train_rows,
            mesh=mesh,
            progress=bar and bar.hook,
            pretrained_rows=rows,
        )
    else:  # a Python loop, so on_step can watch the parameters between steps
        opt_state, step = make_step(config, model_cfg, params, steps_per_epoch, pretrained_rows=rows)
    # what best.npz and checkpoint.npz store the state against (E's initial value, the fresh optimizer
    # state): taken before the first step, which donates these arrays
    E0 = _initial_E(run_dir, prepared, resume)
    base = rundir.state_base(params, opt_state, E0)
    if resume:
        (params, opt_state), history, best = reopen_run(run_dir, conf, config, (params, opt_state), base)
        log(f"resuming {run_dir} after epoch {len(history)} (best dev F1 {best['f1']:.4f} at epoch {best['epoch']})")
    else:
        if writer:
            rundir.start_run(run_dir, config, model_cfg, prepared)
        history, best = [], {"f1": -1.0, "epoch": 0}
    schedule = optim.make_schedule(config, steps_per_epoch)
    epoch = len(history)
    # patience is checked before an epoch, not after, so a resumed run that had stopped stays stopped
    while epoch < config.epochs and not _patience_ran_out(config, epoch, best):
        epoch += 1
        t0 = time.perf_counter()
        if mesh is not None:
            params, opt_state = parallel.replicate((params, opt_state), mesh)
        with bar.epoch(epoch) if bar else contextlib.nullcontext():
            new_params, new_opt_state, train_loss = run_epoch(
                step, params, opt_state, train_rows, config, epoch, progress=progress, on_step=on_step
            )
        if not math.isfinite(train_loss):
            raise TrainingDiverged(_divergence_message(config, run_dir, epoch, train_loss))
        # evaluation and the run's files read one copy of the parameters
        params, opt_state = (
            (new_params, new_opt_state) if mesh is None else parallel.local_copy((new_params, new_opt_state))
        )
        dev = evaluate(params, prepared.dev, prepared.tags, model_cfg, config.decode)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "dev_loss": dev["loss"],
            "dev_f1": dev["f1"],
            "dev_precision": dev["precision"],
            "dev_recall": dev["recall"],
            "dev_accuracy": dev["accuracy"],
            "dev_argmax_f1": dev["argmax_f1"],
            "learning_rate": float(schedule(epoch * steps_per_epoch - 1)),  # the rate of the epoch's last step
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        # process 0 decides, so patience cannot stop one process an epoch before the others
        if parallel.agreed(dev["f1"] > best["f1"]):
            best = {"f1": dev["f1"], "epoch": epoch}
            # before checkpoint.npz commits the epoch: a kill in between leaves best.npz one epoch ahead,
            # and the resumed run replays that epoch and rewrites it with the same arrays
            if writer:
                checkpoint.save_tree(run_dir / "best.npz", params, {"epoch": epoch, "dev_f1": dev["f1"]}, base[0])
        if writer:
            rundir.commit_epoch(run_dir, params, opt_state, history, best, config.epochs, base)
        log(_epoch_line(row, config.epochs))
    if epoch < config.epochs:
        log(f"early stop: no better dev F1 for {config.patience} epochs")
    if not writer:  # the best parameters are in process 0's best.npz
        return {"best_epoch": best["epoch"], "dev_f1": best["f1"], "epochs_run": len(history)}
    return _finish(run_dir, config, model_cfg, prepared, history, best, log, E0)


def _initial_E(run_dir: Path, prepared: pipeline.Prepared, resume: bool):
    """E's initial value where the run stores E as the rows that changed from it (rundir.INITIAL_E), else None:
    a new run's is the seeded E; a resumed run's is rebuilt from its record (the one its files were saved against)."""
    if resume:
        return rundir.initial_E(run_dir)
    if not rundir.stores_initial_E(prepared):
        return None
    E0 = np.asarray(prepared.embeddings, np.float32).view()
    E0.setflags(write=False)  # a base: its fingerprint is computed once, not at every save
    return E0


@contextlib.contextmanager
def _disk_full_is_resumable(run_dir: Path):
    """A full disk (or quota) ends the run with one line: the file, and how to go on once there is space."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise rundir.RunDirError(_disk_full_message(run_dir, e.filename or run_dir)) from None


def _disk_full_message(run_dir: Path, path) -> str:
    recorded = run_dir / "checkpoint.npz"
    try:  # what is on disk, whichever write failed
        epoch = checkpoint.read_meta(recorded)["epoch"] if recorded.is_file() else None
    except (ValueError, KeyError, OSError):
        epoch = None
    if epoch is None:
        then = f"no epoch was recorded in {run_dir}: free some space, then start the run again with --overwrite"
    else:
        then = f"the run is kept up to epoch {epoch} ({recorded}): free some space, then continue it with --resume"
    return f"{path}: no space left on device; {then}"


def run_epoch(step, params, opt_state, ds, config: TrainConfig, epoch: int, *, progress=False, on_step=None):
    """One pass over ``ds`` in the shuffled order of (seed, epoch).

    The order and the steps' dropout keys come from the epoch's key
    (:func:`jaxbackprop.compiled_epoch.epoch_key`), so a resumed run replays them exactly, and the
    loop and the compiled epoch take the same steps.

    Args:
      step: ``step(params, opt_state, batch, key) -> (params, opt_state, loss)`` taking the
        batches of :func:`jaxbackprop.pipeline.padded_batches` (:func:`jaxbackprop.step.make_step`),
        or a :class:`jaxbackprop.compiled_epoch.CompiledEpoch`, which runs the same steps in the
        same order with the same keys as one compiled program (no progress bar, no ``on_step``).
      params, opt_state: the state before the epoch.
      ds: the training split, or its :func:`jaxbackprop.pipeline.training_rows` (made here from a
        Dataset: for the crf head, length buckets of padded sentences, whose batches count
        sentences; their batches are interleaved by :func:`jaxbackprop.compiled_epoch.bucket_plan`).
      config: the run's configuration (seed, batch_size, head; a crf batch holds its bucket's
        :func:`jaxbackprop.pipeline.rows_per_batch` sentences).
      epoch: the epoch's number, from 1.
      progress: show a progress bar (the loop's own; a compiled epoch reports through its hook).
      on_step: if given, ``on_step(i, params)`` is called before step i of the epoch (to watch
        the parameters mid-epoch, as experiments do); it must not change them.

    Returns:
      ``(params, opt_state, mean training loss of the epoch)``.
    """
    key = compiled_epoch.epoch_key(config.seed, epoch)
    if isinstance(step, compiled_epoch.CompiledEpoch):
        if on_step is not None:
            raise ValueError("on_step needs the step-by-step loop: pass the step of step.make_step")
        return step(params, opt_state, key)
    rows = pipeline.training_rows(ds, config.model)
    batch_size = pipeline.rows_per_batch(config.batch_size, rows)
    _, steps_key = compiled_epoch.epoch_keys(key)
    losses = []
    if isinstance(batch_size, tuple):  # the crf head's length buckets, interleaved as the compiled epoch does
        counts = [pipeline.row_count(r) for r in rows]
        orders, schedule, _ = compiled_epoch.bucket_plan(key, counts, batch_size)
        batches = pipeline.scheduled_batches(rows, batch_size, [np.asarray(o) for o in orders], np.asarray(schedule))
    else:
        order = np.asarray(compiled_epoch.epoch_order(key, pipeline.row_count(rows)))
        batches = pipeline.padded_batches(rows, batch_size, order)
    if progress:
        from tqdm.auto import tqdm

        steps_per_epoch = pipeline.steps_per_epoch(rows, batch_size)
        batches = tqdm(
            batches, total=steps_per_epoch, desc=f"epoch {epoch}", leave=False, file=sys.stderr, disable=None
        )
    for i, batch in enumerate(batches):
        if on_step is not None:
            on_step(i, params)
        params, opt_state, J = step(params, opt_state, batch, jax.random.fold_in(steps_key, i))
        losses.append(J)
    return params, opt_state, float(jnp.mean(jnp.stack(losses)))


def _mesh_and_batch_rows(devices, batch_size: int, train_rows, on_step, log):
    """The data mesh of ``devices`` (None: one device) and the rows per step that split evenly over it
    (:func:`jaxbackprop.compiled_epoch.rows_per_step`); says so where the crf head's are rounded up."""
    mesh = None if devices is None else parallel.mesh_for(devices)
    if mesh is not None and on_step is not None:
        raise ValueError("on_step watches a one-device Python loop; it cannot run over several devices")
    batch_rows = compiled_epoch.rows_per_step(batch_size, train_rows, mesh)
    derived = pipeline.rows_per_batch(batch_size, train_rows)
    if batch_rows != derived:
        log(
            f"--batch-size {batch_size} makes {derived[0]} sentences per step; {batch_rows[0]} here, "
            f"rounded up to a multiple of the {mesh.devices.size} devices"
        )
    return mesh, batch_rows


class _ProgressBar:
    """A tqdm bar per epoch, moved from inside the compiled epoch through ``hook`` (a host callback)."""

    UPDATES = 50  # callbacks per epoch: enough for a smooth bar, few enough to cost nothing measurable

    def __init__(self, steps_per_epoch: int):
        self.steps, self.bar = steps_per_epoch, None
        self.hook = (max(1, steps_per_epoch // self.UPDATES), self._update)

    def _update(self, done):
        if self.bar is not None:
            self.bar.n = int(done)
            self.bar.refresh()

    @contextlib.contextmanager
    def epoch(self, epoch: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch}", leave=False, file=sys.stderr)
        try:
            yield
        finally:
            self.bar.close()
            self.bar = None


def _patience_ran_out(config: TrainConfig, epoch: int, best: dict) -> bool:
    return bool(config.patience) and epoch - best["epoch"] >= config.patience


def _divergence_message(config: TrainConfig, run_dir: Path, epoch: int, loss: float) -> str:
    # epoch N's checkpoint exists exactly when N >= 1 finished (a resumed run starts after one)
    if epoch > 1:
        kept = f"the last good checkpoint (epoch {epoch - 1}) is kept in {run_dir / 'checkpoint.npz'}"
    else:
        kept = "no epoch had finished, so there is no checkpoint"
    too_large = f"learning rate {config.learning_rate:g} too large?"
    return f"epoch {epoch}: the training loss became {loss} ({too_large}); stopped, {kept}"


def _epoch_line(row: dict, epochs: int) -> str:
    f1 = row.get("dev_argmax_f1")
    argmax = "" if f1 is None or f1 == row["dev_f1"] else f"; argmax {f1:.4f}"
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f}  dev loss {row['dev_loss']:.4f}  "
        f"dev F1 {row['dev_f1']:.4f} (P {row['dev_precision']:.3f} R {row['dev_recall']:.3f}{argmax})  "
        f"acc {row['dev_accuracy']:.4f}  lr {row['learning_rate']:.1e}  {row['seconds']:.1f}s"
    )


def _finish(run_dir: Path, config: TrainConfig, model_cfg, prepared: pipeline.Prepared, history, best, log, E0) -> dict:
    """Evaluate the best epoch on test, write summary.json and the learning curve, log one line."""
    params, _ = rundir.load_params(run_dir, model_cfg, E0)
    best_row = next((r for r in history if r["epoch"] == best["epoch"]), {})
    summary = {
        "best_epoch": best["epoch"],
        "dev_f1": best["f1"],
        "dev_argmax_f1": best_row.get("dev_argmax_f1"),
        "decode": config.decode,
        "epochs_run": len(history),
        "train_seconds": sum(r["seconds"] for r in history),
    }
    if prepared.embeddings_source is not None:
        summary["embeddings"] = prepared.embeddings_source
    if prepared.test is not None:
        test = evaluate(params, prepared.test, prepared.tags, model_cfg, config.decode)
        summary.update(
            test_f1=test["f1"],
            test_precision=test["precision"],
            test_recall=test["recall"],
            test_accuracy=test["accuracy"],
            test_per_type=test["per_type"],
            test_argmax_f1=test["argmax_f1"],
        )
    files.write_json(run_dir / "summary.json", summary)
    from jaxbackprop import plots  # matplotlib only once there is something to draw

    plots.learning_curve(history, run_dir / "learning_curve.png", title=f"{run_dir.name}")
    log(_summary_line(summary, best, config.decode, run_dir))
    return summary


def _summary_line(summary: dict, best: dict, decoder: str, run_dir: Path) -> str:
    test_text = f", test F1 {summary['test_f1']:.4f}" if "test_f1" in summary else ""
    if decoder != "argmax" and summary["dev_argmax_f1"] is not None:
        argmax_test = f", test {summary['test_argmax_f1']:.4f}" if "test_f1" in summary else ""
        test_text += f" ({decoder} decoding; per-token argmax: dev {summary['dev_argmax_f1']:.4f}{argmax_test})"
    seconds = f"{summary['train_seconds']:.1f}s of training"
    return f"best dev F1 {best['f1']:.4f} at epoch {best['epoch']}{test_text}; {seconds}; files in {run_dir}"
