"""Training and evaluation: one jitted optax step, an epoch loop, metrics and checkpoints.

The gradient source (``"manual"``: hand-derived backprop, ``"autodiff"``: ``jax.grad``) and the
model implementation (``"pure"`` functions or the ``"flax"`` module) are swapped inside the same
jitted step; with equal seeds they reach the same parameters up to float round-off.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import platform
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbackprop.provenance import portable_argv
from jaxbackprop import backprop, checkpoint, data, decode, embeddings, metrics, model

GRADS = ("manual", "autodiff")
IMPLS = ("pure", "flax")
SCHEDULES = ("constant", "step", "exponential", "cosine", "cyclic", "warmup_cosine")
EMBEDDING_MODES = ("finetune", "frozen")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the defaults are the best found on CoNLL-2003).

    Attributes:
      window: words per window (odd).
      hidden_dim: hidden units H.
      activation: f, see :data:`jaxbackprop.nonlinearities.ACTIVATIONS`.
      init: initialisation of W and U: "xavier", "normal" or "zeros".
      l2: lambda of the L2 penalty on W and U.
      dropout: inverted-dropout rate on h (and on x unless input_dropout is set).
      input_dropout: inverted-dropout rate on x (None: the same as dropout).
      word_dropout: fraction of training word ids replaced by <unk> each step, so the unknown
        word's vector learns what an unseen word looks like.
      casing_dim: width of the casing embedding (0: no casing feature).
      suffix_len: also give each word its last suffix_len letters as a feature, a row of the same
        table as casing (0: none; without casing, casing_dim = 0, there is no table and no suffix).
      suffix_min_count: suffixes seen fewer times in training share one "unseen suffix" row.
      embed_dim: word-vector width when no pretrained vectors are given.
      optimizer: any optax optimizer name taking a learning rate (sgd, momentum, adagrad,
        rmsprop, adam, adamw, ...); "momentum" is sgd with momentum 0.9.
      learning_rate: peak learning rate.
      schedule: "constant", "step" (multiply by decay_rate every decay_epochs epochs),
        "exponential" (smooth version of step), "cosine", "cyclic" (triangular, period
        2 * decay_epochs epochs, between learning_rate * decay_rate and learning_rate),
        "warmup_cosine" (linear warm-up over the first epoch, then cosine).
      decay_epochs, decay_rate: parameters of the schedules above.
      epochs: passes over the training data.
      batch_size: windows per step.
      patience: stop after this many epochs without a better dev F1 (0: never stop early).
      seed: seeds initialisation, shuffling, dropout and word dropout.
      grad: "manual" (hand-derived) or "autodiff" (jax.grad).
      impl: "pure" (functions over a dict) or "flax" (the NNX module).
      embeddings_mode: "finetune" (E is trained) or "frozen" (E keeps its initial values).
      sparse: update only the embedding rows present in each batch: E follows the rows-only rule
        of the optimizer for sgd and adagrad, and lazy Adam for every other optimizer; the dense
        parameters keep the optax optimizer.
      min_count: words seen fewer times in training become <unk> (unless pretrained).
      decode: how dev/test/predicted tags are read off the per-token softmax: "viterbi" (the most
        probable tag sequence that is valid IOB2; see jaxbackprop.decode) or "argmax" (each
        token's most probable tag). Training is the same either way.
    """

    window: int = 7
    hidden_dim: int = 500
    activation: str = "relu"
    init: str = "xavier"
    l2: float = 0.0
    dropout: float = 0.3
    input_dropout: float | None = None
    word_dropout: float = 0.05
    casing_dim: int = 8
    suffix_len: int = 3
    suffix_min_count: int = 5
    embed_dim: int = 50
    optimizer: str = "adam"
    learning_rate: float = 5e-3
    schedule: str = "cosine"
    decay_epochs: int = 3
    decay_rate: float = 0.5
    epochs: int = 10
    batch_size: int = 1024
    patience: int = 0
    seed: int = 0
    grad: str = "manual"
    impl: str = "pure"
    embeddings_mode: str = "finetune"
    sparse: bool = False
    min_count: int = 2
    decode: str = "viterbi"

    def __post_init__(self):
        # Every message starts with the field's name, so the CLI can name the option instead.
        from jaxbackprop.nonlinearities import ACTIVATIONS

        for name, allowed in (("grad", GRADS), ("impl", IMPLS), ("schedule", SCHEDULES), ("embeddings_mode", EMBEDDING_MODES),
                              ("decode", decode.DECODERS), ("activation", ACTIVATIONS), ("init", model.INITS)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.optimizer not in optimizer_names():
            raise ValueError(f"optimizer must name an optax optimizer that takes a learning rate, one of {optimizer_names()}, "
                             f"got {self.optimizer!r}")  # fmt: skip
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1 or self.window % 2 != 1:
            raise ValueError(f"window must be an odd integer >= 1 (a centre word and equal context), got {self.window!r}")
        for name, minimum in (("hidden_dim", 1), ("embed_dim", 1), ("casing_dim", 0), ("suffix_len", 0), ("suffix_min_count", 1),
                              ("decay_epochs", 1), ("epochs", 1), ("batch_size", 1), ("patience", 0), ("seed", 0),
                              ("min_count", 1)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        def real(value) -> bool:  # a finite int or float, not a bool
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        for name in ("dropout", "input_dropout", "word_dropout"):
            value = getattr(self, name)
            if not (value is None and name == "input_dropout") and not (real(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        for name, positive in (("l2", False), ("learning_rate", True), ("decay_rate", True)):
            value = getattr(self, name)
            if not (real(value) and (value > 0 if positive else value >= 0)):
                raise ValueError(f"{name} must be a number {'>' if positive else '>='} 0, got {value!r}")
        if self.sparse and self.grad != "manual":
            raise ValueError("sparse=True needs grad='manual': only the hand-derived gradient yields E's rows")


# ----------------------------------------------------------------------------- data


class Prepared(NamedTuple):
    """A corpus turned into arrays, plus what is needed to map them back to words and tags."""

    vocab: data.Vocab
    tags: tuple
    train: data.Dataset
    dev: data.Dataset
    test: data.Dataset | None
    embeddings: np.ndarray | None  # (V, d) initial E, from pretrained vectors
    coverage: dict


def prepare(train_sents, dev_sents, test_sents=None, pretrained=None, *, window=5, min_count=1, seed=0, suffix_len=0,
            suffix_min_count=1) -> Prepared:  # fmt: skip
    """Vocabulary, tag set and windows for each split; E seeded from ``pretrained`` (words, vectors).

    Pretrained words join the vocabulary even when training never shows them, so dev/test words
    with a pretrained vector keep it at evaluation time. ``suffix_len``/``suffix_min_count``: see
    :func:`jaxbackprop.data.build_vocab`.

    Raises:
      ValueError: a dev or test tag that training never showed (``"dev sentence 3: tag 'B-MISC'
        ..."``); read those files with ``data.read_conll(path, allowed_tags=data.tags_from(train))``
        to have the error name the file and line instead.
    """
    words, vectors = pretrained if pretrained is not None else ((), None)
    vocab = data.build_vocab(train_sents, min_count=min_count, extra_words=words, suffix_len=suffix_len, suffix_min_count=suffix_min_count)
    tags = data.tags_from(train_sents)
    index = data.make_tag_index(tags)
    splits = [data.make_windows(s, vocab, index, window, name=f"{split} sentence") if s is not None else None
              for split, s in (("train", train_sents), ("dev", dev_sents), ("test", test_sents))]  # fmt: skip
    E, coverage = (None, {})
    if vectors is not None:
        E, coverage = embeddings.embedding_matrix(vocab, words, vectors, seed)
    return Prepared(vocab, tags, *splits, E, coverage)


def prepare_for(cfg: TrainConfig, train_sents, dev_sents, test_sents=None, pretrained=None) -> Prepared:
    """:func:`prepare` with the data settings of ``cfg`` (window, min_count, seed, suffixes)."""
    return prepare(train_sents, dev_sents, test_sents, pretrained, window=cfg.window, min_count=cfg.min_count, seed=cfg.seed,
                   suffix_len=cfg.suffix_len if cfg.casing_dim else 0, suffix_min_count=cfg.suffix_min_count)  # fmt: skip


def model_config(cfg: TrainConfig, prepared: Prepared) -> model.ModelConfig:
    embed_dim = prepared.embeddings.shape[1] if prepared.embeddings is not None else cfg.embed_dim
    return model.ModelConfig(
        vocab_size=len(prepared.vocab), embed_dim=embed_dim, window=cfg.window, hidden_dim=cfg.hidden_dim,
        num_classes=len(prepared.tags), activation=cfg.activation, head="softmax", l2=cfg.l2, dropout=cfg.dropout,
        input_dropout=cfg.input_dropout,
        casing_size=prepared.vocab.feature_size if cfg.casing_dim else 0, casing_dim=cfg.casing_dim,
        features_per_word=prepared.vocab.features_per_word if cfg.casing_dim else 1,
        fast=True,  # the default run trains with jaxbackprop.fast's lookup and dropout masks
    )  # fmt: skip


def padded_batches(ds: data.Dataset, batch_size: int, order=None):
    """Batches of exactly ``batch_size`` rows (static shapes: one compile); the last one is
    padded with copies of row 0 that carry weight 0, so they change neither loss nor gradient."""
    n = len(ds.windows)
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        weights = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weights[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.zeros(batch_size - len(idx), idx.dtype)])
        batch = {"windows": ds.windows[idx], "casing": ds.casing[idx], "weights": weights}
        if ds.labels is not None:
            batch["labels"] = ds.labels[idx]
        yield batch


def _model_batch(batch, cfg: model.ModelConfig):
    keep = model.batch_keys(cfg) + ("weights",)
    return {k: v for k, v in batch.items() if k in keep}


# ----------------------------------------------------------------------------- optimisation


def make_schedule(cfg: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    lr, k = cfg.learning_rate, cfg.decay_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule == "step":
        return optax.exponential_decay(lr, transition_steps=k, decay_rate=cfg.decay_rate, staircase=True)
    if cfg.schedule == "exponential":
        return optax.exponential_decay(lr, transition_steps=k, decay_rate=cfg.decay_rate)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=total)
    if cfg.schedule == "cyclic":
        low = lr * cfg.decay_rate
        return lambda step: low + (lr - low) * (1 - jnp.abs((step % (2 * k)) / k - 1))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=steps_per_epoch, decay_steps=max(total, steps_per_epoch + 1))


def make_optimizer(name: str, learning_rate) -> optax.GradientTransformation:
    """An optax optimizer by name; ``"momentum"`` is SGD with momentum 0.9."""
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=0.9)
    return getattr(optax, name)(learning_rate)


@functools.cache
def optimizer_names() -> tuple[str, ...]:
    """Every name :func:`make_optimizer` accepts: optax's optimizers that take a learning rate.

    Read off optax itself: the functions of ``optax.__all__`` whose first parameter is a
    ``learning_rate`` that may be a schedule (runs pass one), whose other parameters all have
    defaults and which return a ``GradientTransformation``; not the ``scale_by_*`` building
    blocks (``scale_by_rprop`` lacks the final sign flip and would climb the loss) and not
    ``lbfgs``, whose update needs the loss function for its line search. Then ``"momentum"``.

    >>> {"sgd", "adam", "adamw", "rmsprop", "adagrad", "momentum"} <= set(optimizer_names())
    True
    """
    names = []
    for name in sorted(optax.__all__):
        fn = vars(optax).get(name)  # not getattr: the deprecated names warn
        if name.startswith("scale_by_") or name == "lbfgs" or not inspect.isfunction(fn):
            continue
        sig = inspect.signature(fn)
        first, *rest = list(sig.parameters.values()) or [None]
        returns = sig.return_annotation
        if (first is not None and first.name == "learning_rate" and "Callable" in str(first.annotation)
                and all(p.default is not p.empty for p in rest)
                and isinstance(returns, type) and issubclass(returns, optax.GradientTransformation)):  # fmt: skip
            names.append(name)
    return (*names, "momentum")


def make_transform(cfg: TrainConfig, params, steps_per_epoch: int) -> optax.GradientTransformation:
    tx = make_optimizer(cfg.optimizer, make_schedule(cfg, steps_per_epoch))
    if cfg.embeddings_mode == "frozen":
        labels = {k: ("frozen" if k == "E" else "trained") for k in params}
        tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
    return tx


def value_and_grad_fn(grad: str, impl: str) -> Callable:
    """``(params, batch, cfg, *, key) -> (loss, grads)`` for a gradient source and implementation."""
    if impl == "flax":
        from jaxbackprop import flax_model

        if grad == "manual":
            raise ValueError("impl='flax' differentiates the flax module with autodiff; use grad='autodiff'")
        return flax_model.flax_value_and_grad
    if grad == "manual":
        return backprop.manual_value_and_grad
    return jax.value_and_grad(model.loss)


def drop_words(key, windows, rate: float):
    """Replace each non-reserved word id by <unk> with probability ``rate``."""
    hit = jax.random.bernoulli(key, rate, windows.shape) & (windows >= len(data.RESERVED))
    return jnp.where(hit, data.UNK_ID, windows)


def with_word_dropout(step, rate: float):
    """Wrap ``step(params, opt_state, batch, key)``: split the key, replace words by <unk> at
    ``rate`` with the first half, and pass the second half on as the step's dropout key.

    Every step (dense, rows-only, flax) goes through this, so equal seeds give equal masks.
    """

    def wrapped(params, opt_state, batch, key):
        k_words, k_step = jax.random.split(key)
        if rate:
            batch = {**batch, "windows": drop_words(k_words, batch["windows"], rate)}
        return step(params, opt_state, batch, k_step)

    return wrapped


def make_train_step(cfg: model.ModelConfig, tx, value_and_grad, word_dropout: float = 0.0):
    """A jitted ``step(params, opt_state, batch, key) -> (params, opt_state, loss)``."""

    def step(params, opt_state, batch, key):
        J, grads = value_and_grad(params, batch, cfg, key=key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, J

    return jax.jit(with_word_dropout(step, word_dropout))


def make_step_for(cfg: TrainConfig, mcfg: model.ModelConfig, params, steps_per_epoch: int):
    """``(opt_state, step)`` for a run: dense optax step, or the rows-only embedding update."""
    if cfg.sparse:
        from jaxbackprop import sparse

        schedule = make_schedule(cfg, steps_per_epoch)
        rule = cfg.optimizer if cfg.optimizer in ("sgd", "adagrad") else "adam"
        init, step = sparse.make_sparse_step(
            mcfg, make_optimizer(cfg.optimizer, schedule), rule, schedule, freeze_embeddings=cfg.embeddings_mode == "frozen"
        )
        # donate like the sparse step itself, or every step would copy E and its moment tables
        return init(params), jax.jit(with_word_dropout(step, cfg.word_dropout), donate_argnums=(0, 1))
    tx = make_transform(cfg, params, steps_per_epoch)
    return tx.init(params), make_train_step(mcfg, tx, value_and_grad_fn(cfg.grad, cfg.impl), cfg.word_dropout)


# ----------------------------------------------------------------------------- evaluation


@functools.partial(jax.jit, static_argnames="cfg")
def _eval_batch(params, batch, cfg):
    logits = model.forward(params, batch["windows"], cfg, batch.get("casing"))
    losses = model.per_example_loss(params, batch, cfg) if "labels" in batch else jnp.zeros(logits.shape[0])
    return jax.nn.log_softmax(logits, axis=-1), jnp.sum(losses * batch["weights"])


def predict_log_probs(params, ds: data.Dataset, cfg: model.ModelConfig, batch_size: int = 1024):
    """(N, C) log-probabilities of every tag for every window of ``ds``, and the summed loss (when labelled)."""
    out, total = [], 0.0
    for batch in padded_batches(ds, batch_size):
        log_probs, loss_sum = _eval_batch(params, _model_batch(batch, cfg), cfg)
        out.append(np.asarray(log_probs)[batch["weights"] > 0])
        total += float(loss_sum)
    return np.concatenate(out), total


def predict_labels(params, ds: data.Dataset, tags, cfg: model.ModelConfig, decoder: str = "viterbi"):
    """Predicted tag ids for every window of ``ds`` (see :func:`jaxbackprop.decode.decode`), and the summed loss."""
    log_probs, total = predict_log_probs(params, ds, cfg)
    return decode.decode(log_probs, ds.sentence_lengths, tags, decoder), total


def evaluate(params, ds: data.Dataset, tags, cfg: model.ModelConfig, decoder: str = "viterbi") -> dict:
    """Entity-level precision/recall/F1 (CoNLL rules), token accuracy and loss on ``ds``.

    The scores use ``decoder``'s tags; ``argmax_f1`` is the entity F1 of the per-token argmax, so
    the two decoders can be compared on every evaluation. ``loss`` is the training objective --
    mean cross-entropy plus the L2 penalty -- so that it compares with the training loss;
    evaluate with an ``l2=0`` config for the data loss alone.
    """
    log_probs, loss_sum = predict_log_probs(params, ds, cfg)
    tag_arr = np.asarray(tags)
    true_seqs = metrics.split_by_lengths(list(tag_arr[ds.labels]), ds.sentence_lengths)

    def tag_seqs(method):
        return metrics.split_by_lengths(list(tag_arr[decode.decode(log_probs, ds.sentence_lengths, tags, method)]), ds.sentence_lengths)

    preds = {method: tag_seqs(method) for method in dict.fromkeys((decoder, "argmax"))}
    each = metrics.entity_scores_of_each(true_seqs, preds)
    pred_seqs, scores, argmax_f1 = preds[decoder], each[decoder], each["argmax"]["f1"]
    return {
        "loss": loss_sum / len(log_probs) + float(model.l2_penalty(params, cfg)),
        "f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
        "accuracy": metrics.token_accuracy(true_seqs, pred_seqs), "per_type": scores["per_type"], "argmax_f1": argmax_f1,
    }  # fmt: skip


# ----------------------------------------------------------------------------- the run


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class RunDirError(ValueError):
    """A run directory cannot be used as asked: it holds another run, lacks a file, or records other
    settings or data than the given ones. The message is one sentence that names the path."""


# Every file a run writes; nothing else in a run directory is ever touched. A directory holding any
# of RESULT_FILES holds a run that training must not replace unasked (vocab.json and the plot are
# remade from the data and the metrics).
RUN_FILES = ("checkpoint.npz", "best.npz", "metrics.jsonl", "summary.json", "learning_curve.png", "config.json", "vocab.json")
RESULT_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "best.npz", "summary.json")
# schedules whose rate at a step depends on the number of epochs: more epochs change the past ones
EPOCH_SPANNING_SCHEDULES = ("cosine", "warmup_cosine")


def environment() -> dict:
    """Which device and versions produced a result."""
    import flax
    import optax as _optax

    dev = jax.devices()[0]
    return {
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}", "device_count": jax.device_count(),
        "jax": jax.__version__, "optax": _optax.__version__, "flax": flax.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
    }  # fmt: skip


def init_run_params(cfg: TrainConfig, prepared: Prepared):
    mcfg = model_config(cfg, prepared)
    return mcfg, compiled_init_params(jax.random.key(cfg.seed), mcfg, cfg.init, prepared.embeddings)


def compiled_init_params(key, mcfg: model.ModelConfig, init: str, embeddings=None):
    """``model.init_params`` as one compiled program (equal to 1 ulp: XLA fuses the N(0, 0.01^2)
    scaling). Run eagerly, each random op compiles on its own: about 2 s per run on a 2-core CPU."""
    return _compiled_init_params(key, embeddings, mcfg, init)


@functools.partial(jax.jit, static_argnames=("mcfg", "init"))
def _compiled_init_params(key, embeddings, mcfg, init):
    return model.init_params(key, mcfg, init=init, embeddings=embeddings)


def train_and_evaluate(cfg: TrainConfig, prepared: Prepared, run_dir, *, resume=False, overwrite=False, progress=True,
                       log=print) -> dict:  # fmt: skip
    """Train on ``prepared.train``, select the best epoch on dev F1, evaluate it on test.

    Writes into ``run_dir``: ``config.json``, ``vocab.json``, ``metrics.jsonl`` (one object per
    epoch), ``checkpoint.npz`` (params + optimizer state after the last finished epoch, for
    ``resume``), ``best.npz`` (params of the best dev epoch), ``learning_curve.png`` and
    ``summary.json`` (:data:`RUN_FILES`); any other file in ``run_dir`` is left alone.

    An epoch is recorded by one atomic rename: ``checkpoint.npz``'s meta holds every epoch's
    metrics row and the best epoch, and ``metrics.jsonl`` is rewritten from it (again on resume).
    ``best.npz`` is written just before it, so a kill in between leaves it one epoch ahead, which
    the resumed run rewrites identically (replaying an epoch is deterministic). Killed at any
    instant and resumed, a run ends with the files of an uninterrupted run, timings aside.

    Args:
      cfg: the training configuration.
      prepared: the data, from :func:`prepare_for`.
      run_dir: the run's directory; created if needed.
      resume: continue the run in ``run_dir`` after its last recorded epoch. ``cfg`` and the data
        must be the recorded ones, except that ``epochs`` may grow (see :func:`config_differences`).
      overwrite: replace the run files of a run already in ``run_dir`` (without it, a directory
        holding any of :data:`RESULT_FILES` is refused).
      progress: show a progress bar per epoch.
      log: called with one readable line per epoch.

    Returns:
      The summary, also written to ``summary.json``.

    Raises:
      RunDirError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` was given; or
        ``resume`` finds no checkpoint, or other settings or data than the recorded ones. Nothing
        has been written then.
      TrainingDiverged: the loss became non-finite; the last good checkpoint, if any, is kept.
    """
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ValueError(f"{run_dir}: --resume and --overwrite exclude each other (one continues the run, the other replaces it)")
    mcfg = model_config(cfg, prepared)
    # every check comes before anything is computed or written, so a refused call changes nothing
    conf = _check_resumable(run_dir, cfg, mcfg, prepared) if resume else _check_writable(run_dir, overwrite)
    _, params = init_run_params(cfg, prepared)
    steps_per_epoch = math.ceil(len(prepared.train.windows) / cfg.batch_size)
    opt_state, step = make_step_for(cfg, mcfg, params, steps_per_epoch)
    if resume:
        (params, opt_state), history, best = _reopen_run(run_dir, conf, cfg, (params, opt_state))
        log(f"resuming {run_dir} after epoch {len(history)} (best dev F1 {best['f1']:.4f} at epoch {best['epoch']})")
    else:
        _start_run(run_dir, cfg, mcfg, prepared)
        history, best = [], {"f1": -1.0, "epoch": 0}
    epoch = len(history)
    # patience is checked before an epoch, not after, so a resumed run that had stopped stays stopped
    while epoch < cfg.epochs and not _patience_ran_out(cfg, epoch, best):
        epoch += 1
        t0 = time.perf_counter()
        params_new, opt_state_new, train_loss = run_epoch(step, params, opt_state, prepared.train, cfg, mcfg, epoch, steps_per_epoch, progress)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(_divergence_message(cfg, run_dir, epoch, train_loss))
        params, opt_state = params_new, opt_state_new
        dev = evaluate(params, prepared.dev, prepared.tags, mcfg, cfg.decode)
        row = {"epoch": epoch, "train_loss": train_loss, "dev_loss": dev["loss"], "dev_f1": dev["f1"],
               "dev_precision": dev["precision"], "dev_recall": dev["recall"], "dev_accuracy": dev["accuracy"],
               "dev_argmax_f1": dev["argmax_f1"],
               "learning_rate": float(make_schedule(cfg, steps_per_epoch)(epoch * steps_per_epoch - 1)),
               "seconds": time.perf_counter() - t0}  # fmt: skip
        history.append(row)
        if dev["f1"] > best["f1"]:
            best = {"f1": dev["f1"], "epoch": epoch}
            # before checkpoint.npz commits the epoch: a kill in between leaves best.npz one epoch ahead,
            # and the resumed run replays that epoch and rewrites it with the same arrays
            checkpoint.save_tree(run_dir / "best.npz", params, {"epoch": epoch, "dev_f1": dev["f1"]})
        _commit_epoch(run_dir, params, opt_state, history, best)
        log(_epoch_line(row, cfg.epochs))
    if epoch < cfg.epochs:
        log(f"early stop: no better dev F1 for {cfg.patience} epochs")
    return _finish(run_dir, cfg, mcfg, prepared, history, best, log)


def _patience_ran_out(cfg: TrainConfig, epoch: int, best: dict) -> bool:
    return bool(cfg.patience) and epoch - best["epoch"] >= cfg.patience


def _divergence_message(cfg: TrainConfig, run_dir: Path, epoch: int, loss: float) -> str:
    # epoch N's checkpoint exists exactly when N >= 1 finished (a resumed run starts after one)
    kept = (f"the last good checkpoint (epoch {epoch - 1}) is kept in {run_dir / 'checkpoint.npz'}" if epoch > 1
            else "no epoch had finished, so there is no checkpoint")  # fmt: skip
    return f"epoch {epoch}: the training loss became {loss} (learning rate {cfg.learning_rate:g} too large?); stopped, {kept}"


def _commit_epoch(run_dir: Path, params, opt_state, history: list, best: dict) -> None:
    """Record a finished epoch: ``checkpoint.npz`` is the record (state, every epoch's metrics row,
    the best epoch), replaced by one atomic rename; ``metrics.jsonl`` is a readable copy of its rows."""
    meta = {"epoch": history[-1]["epoch"], "best": best, "history": history}
    checkpoint.save_tree(run_dir / "checkpoint.npz", (params, opt_state), meta)
    checkpoint.write_jsonl(run_dir / "metrics.jsonl", history)


# ----------------------------------------------------------------------------- the run directory


def _check_writable(run_dir: Path, overwrite: bool) -> None:
    """Refuse a ``run_dir`` that is a file, or holds a run's results when ``overwrite`` is not given."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory; choose another --run-dir")
    found = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if found and not overwrite:
        raise RunDirError(f"{run_dir}: already holds a run ({', '.join(found)}); use --resume to continue it, "
                          f"--overwrite to replace its files, or another --run-dir")  # fmt: skip


def _start_run(run_dir: Path, cfg: TrainConfig, mcfg, prepared: Prepared) -> None:
    """Delete the run files of an earlier run in ``run_dir`` (only those) and write config.json and vocab.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:  # checkpoint.npz first: a kill midway leaves nothing to resume by mistake
        (run_dir / name).unlink(missing_ok=True)
        checkpoint.remove_temporaries(run_dir / name)
    _write_run_files(run_dir, cfg, mcfg, prepared)


def _write_run_files(run_dir: Path, cfg, mcfg, prepared: Prepared) -> None:
    # vocab.json first: a directory with a config.json has both
    checkpoint.write_text(run_dir / "vocab.json", prepared.vocab.to_json())
    checkpoint.write_json(run_dir / "config.json", {
        "train": dataclasses.asdict(cfg), "model": dataclasses.asdict(mcfg), "tags": list(prepared.tags),
        "data": {split: data_fingerprint(getattr(prepared, split)) for split in ("train", "dev", "test")},
        "embedding_coverage": prepared.coverage, "environment": environment(), "command": portable_argv(sys.argv),
    })  # fmt: skip


def data_fingerprint(ds: data.Dataset | None) -> str | None:
    """A short hash of a split's arrays (None for a missing split), so a resumed run can tell
    that it is given the recorded data: a different dev or test file can share the vocabulary."""
    if ds is None:
        return None
    digest = hashlib.sha256()
    for a in (ds.windows, ds.casing, ds.labels, ds.sentence_lengths):
        if a is not None:
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:16]


def _check_resumable(run_dir: Path, cfg: TrainConfig, mcfg, prepared: Prepared) -> dict:
    """The run's config.json, once it is certain that ``cfg`` and ``prepared`` continue that run exactly."""
    path = run_dir / "checkpoint.npz"
    if not path.is_file():
        if (run_dir / "config.json").exists():
            raise RunDirError(f"{path}: no checkpoint to resume from (no epoch of this run finished, or the file was removed); "
                              f"nothing was changed; use --overwrite to train this run again from the start")  # fmt: skip
        raise RunDirError(f"{path}: no checkpoint to resume from ({run_dir} holds no run); train without --resume to start one")
    conf = read_config(run_dir)
    # model differences follow from the train ones; alone, they point at the data (vocabulary, vector width)
    problems = config_differences(conf["train"], cfg) or _differences(conf["model"], dataclasses.asdict(mcfg), "model.")
    problems += _data_differences(run_dir, conf, prepared)
    if problems:
        raise RunDirError(f"{run_dir}: cannot resume with other settings or data than the run's ({'; '.join(problems)}); "
                          f"resume with the recorded ones, or start a new run with another --run-dir or --overwrite")  # fmt: skip
    return conf


def config_differences(recorded: dict, cfg: TrainConfig) -> list[str]:
    """Why ``cfg`` cannot continue a run recorded with the TrainConfig fields ``recorded``.

    Every field must be equal, except ``epochs``, which may grow -- unless the schedule spans all
    epochs (cosine), where more epochs would change the learning rate of the epochs already trained.

    Args:
      recorded: the ``"train"`` section of a run's config.json.
      cfg: the configuration given to resume it.

    Returns:
      One ``"field: run has X, given Y"`` per difference; empty when ``cfg`` continues the run.

    >>> run = dataclasses.asdict(TrainConfig(schedule="step", epochs=5))
    >>> config_differences(run, TrainConfig(schedule="step", epochs=8, activation="tanh"))
    ["activation: run has 'relu', given 'tanh'"]
    >>> config_differences(run, TrainConfig(schedule="step", epochs=3))
    ['epochs: run has 5, given 3 (epochs may only grow)']
    """
    problems = _differences(recorded, dataclasses.asdict(cfg), skip=("epochs",))
    run_epochs = recorded.get("epochs")
    if cfg.epochs != run_epochs:
        if not isinstance(run_epochs, int) or cfg.epochs < run_epochs:
            problems.append(f"epochs: run has {run_epochs!r}, given {cfg.epochs!r} (epochs may only grow)")
        elif cfg.schedule in EPOCH_SPANNING_SCHEDULES:
            problems.append(f"epochs: run has {run_epochs!r}, given {cfg.epochs!r} (the {cfg.schedule} schedule spans all "
                            f"epochs, so more would change the learning rate of the epochs already trained)")  # fmt: skip
    return problems


_ABSENT = object()


def _differences(recorded: dict, given: dict, prefix: str = "", skip=()) -> list[str]:
    def show(value):
        return "no value" if value is _ABSENT else repr(value)

    names = [n for n in dict.fromkeys([*given, *recorded]) if n not in skip]
    pairs = [(n, recorded.get(n, _ABSENT), given.get(n, _ABSENT)) for n in names]
    return [f"{prefix}{n}: run has {show(a)}, given {show(b)}" for n, a, b in pairs if a != b]


def _data_differences(run_dir: Path, conf: dict, prepared: Prepared) -> list[str]:
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


def _vocab_difference(run: data.Vocab, given: data.Vocab) -> str:
    for what, a, b in (("words", run.words, given.words), ("suffixes", run.suffixes, given.suffixes)):
        if a != b:
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            first = [repr(s[i]) if i < len(s) else "the end" for s in (a, b)]
            return f"run has {len(a)} {what}, given {len(b)}, first different at {i} ({first[0]} vs {first[1]})"
    return f"suffix_len: run has {run.suffix_len}, given {given.suffix_len}"


def _reopen_run(run_dir: Path, conf: dict, cfg: TrainConfig, template):
    """``((params, opt_state), history, best)`` after the last recorded epoch; re-derives metrics.jsonl
    (and config.json's epochs, the one change :func:`config_differences` allows) from the checkpoint."""
    state, meta = checkpoint.load_tree(run_dir / "checkpoint.npz", template)
    history = _recorded_history(run_dir, meta)
    _check_best_file(run_dir, meta["best"], meta["epoch"])
    # checks done: from here on, writes
    for name in RUN_FILES:
        checkpoint.remove_temporaries(run_dir / name)
    if conf["train"]["epochs"] != cfg.epochs:
        checkpoint.write_json(run_dir / "config.json", {**conf, "train": {**conf["train"], "epochs": cfg.epochs}})
    checkpoint.write_jsonl(run_dir / "metrics.jsonl", history)
    return state, history, meta["best"]


def _recorded_history(run_dir: Path, meta: dict) -> list[dict]:
    """Every recorded epoch's metrics row: the checkpoint's own, or -- in a checkpoint written before
    it held them -- metrics.jsonl's rows up to its epoch."""
    history, source = meta.get("history"), run_dir / "checkpoint.npz"
    if history is None:
        source = run_dir / "metrics.jsonl"
        history = [r for r in checkpoint.read_jsonl(source) if r["epoch"] <= meta["epoch"]]
    epochs = [r.get("epoch") for r in history]
    if epochs != list(range(1, meta["epoch"] + 1)):
        raise RunDirError(f"{source}: records the metrics of epochs {epochs}, but checkpoint.npz is after epoch {meta['epoch']}; "
                          f"the run cannot be resumed with rows missing")  # fmt: skip
    return history


def _check_best_file(run_dir: Path, best: dict, epoch: int) -> None:
    """best.npz holds the recorded best epoch, or the next one (killed between it and checkpoint.npz)."""
    path = run_dir / "best.npz"
    if not path.is_file():
        raise RunDirError(f"{path}: missing, but checkpoint.npz records the best dev F1 at epoch {best['epoch']}; "
                          f"those parameters cannot be recovered, so the run cannot be resumed")  # fmt: skip
    saved = checkpoint.read_meta(path).get("epoch")
    if saved not in (best["epoch"], epoch + 1):
        raise RunDirError(f"{path}: holds epoch {saved}, but checkpoint.npz records the best dev F1 at epoch {best['epoch']}; "
                          f"it belongs to another run, so this one cannot be resumed")  # fmt: skip


def run_epoch(step, params, opt_state, ds, cfg: TrainConfig, mcfg, epoch: int, steps_per_epoch: int, progress: bool = False,
              on_step=None):  # fmt: skip
    """One pass over ``ds`` in the shuffled order of (seed, epoch): ``(params, opt_state, mean loss)``.

    ``on_step(i, params)``, if given, is called before step i of the epoch (to watch the
    parameters mid-epoch, as experiments do); it must not change them.
    """
    # shuffling and dropout depend only on (seed, epoch, step): a resumed run replays them exactly
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(ds.windows))
    key = jax.random.fold_in(jax.random.key(cfg.seed), epoch)
    losses = []
    batches = padded_batches(ds, cfg.batch_size, order)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}", leave=False, file=sys.stderr, disable=None)
    for i, batch in enumerate(batches):
        if on_step is not None:
            on_step(i, params)
        params, opt_state, J = step(params, opt_state, _model_batch(batch, mcfg), jax.random.fold_in(key, i))
        losses.append(J)
    return params, opt_state, float(jnp.mean(jnp.stack(losses)))


def _epoch_line(row: dict, epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f}  dev loss {row['dev_loss']:.4f}  "
        f"dev F1 {row['dev_f1']:.4f} (P {row['dev_precision']:.3f} R {row['dev_recall']:.3f}{_argmax_note(row)})  "
        f"acc {row['dev_accuracy']:.4f}  lr {row['learning_rate']:.1e}  {row['seconds']:.1f}s"
    )


def _argmax_note(row: dict) -> str:
    f1 = row.get("dev_argmax_f1")
    return "" if f1 is None or f1 == row["dev_f1"] else f"; argmax {f1:.4f}"


def _finish(run_dir: Path, cfg, mcfg, prepared: Prepared, history, best, log) -> dict:
    params, _ = load_params(run_dir, mcfg)
    best_row = next((r for r in history if r["epoch"] == best["epoch"]), {})
    summary = {"best_epoch": best["epoch"], "dev_f1": best["f1"], "dev_argmax_f1": best_row.get("dev_argmax_f1"), "decode": cfg.decode,
               "epochs_run": len(history), "train_seconds": sum(r["seconds"] for r in history)}  # fmt: skip
    if prepared.test is not None:
        test = evaluate(params, prepared.test, prepared.tags, mcfg, cfg.decode)
        summary.update(test_f1=test["f1"], test_precision=test["precision"], test_recall=test["recall"],
                       test_accuracy=test["accuracy"], test_per_type=test["per_type"], test_argmax_f1=test["argmax_f1"])  # fmt: skip
    checkpoint.write_json(run_dir / "summary.json", summary)
    from jaxbackprop import plots

    plots.learning_curve(history, run_dir / "learning_curve.png", title=f"{run_dir.name}")
    test_text = f", test F1 {summary['test_f1']:.4f}" if "test_f1" in summary else ""
    if cfg.decode != "argmax" and summary["dev_argmax_f1"] is not None:
        argmax_test = f", test {summary['test_argmax_f1']:.4f}" if "test_f1" in summary else ""
        test_text += f" ({cfg.decode} decoding; per-token argmax: dev {summary['dev_argmax_f1']:.4f}{argmax_test})"
    log(f"best dev F1 {best['f1']:.4f} at epoch {best['epoch']}{test_text}; {summary['train_seconds']:.1f}s of training; files in {run_dir}")
    return summary


# ----------------------------------------------------------------------------- reloading a run


def load_run(run_dir):
    """``(train_cfg, model_cfg, vocab, tags, best_params)`` of a finished (or running) run.

    Raises:
      FileNotFoundError: config.json, vocab.json or best.npz is missing (the message names it).
      ValueError: one of them is malformed (the message names it).
    """
    run_dir = Path(run_dir)
    conf = read_config(run_dir)
    try:
        cfg, mcfg = TrainConfig(**conf["train"]), model.ModelConfig(**conf["model"])
    except (TypeError, ValueError) as e:  # fields of another version of jaxbackprop
        raise RunDirError(f"{run_dir / 'config.json'}: not a configuration this version can read ({e})") from None
    vocab = read_vocab(run_dir)
    params, _ = load_params(run_dir, mcfg)
    return cfg, mcfg, vocab, tuple(conf["tags"]), params


def read_config(run_dir) -> dict:
    """The parsed config.json of a run.

    Raises:
      FileNotFoundError: there is no config.json (the message names it).
      ValueError: it is not JSON, or not a run's configuration (RunDirError); the message names it.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file -- {run_dir} is not a jaxbackprop run directory")
    conf = checkpoint.read_json(path)
    missing = [key for key in ("train", "model", "tags") if not isinstance(conf, dict) or key not in conf]
    if missing:
        raise RunDirError(f"{path}: not a jaxbackprop run configuration (no {', '.join(missing)} entry)")
    return conf


def read_vocab(run_dir) -> data.Vocab:
    """The vocabulary of a run (vocab.json); errors as :func:`read_config`'s."""
    path = Path(run_dir) / "vocab.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file -- the run's vocabulary is missing")
    try:
        return data.Vocab.from_json(path.read_text())
    except ValueError as e:
        raise RunDirError(f"{path}: not a jaxbackprop vocabulary ({' '.join(str(e).split())})") from None


def load_params(run_dir, mcfg: model.ModelConfig):
    """``(params, meta)`` of the run's best epoch (best.npz), in the shapes of ``mcfg``."""
    path = Path(run_dir) / "best.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no best checkpoint yet (did an epoch finish?)")
    template = jax.eval_shape(lambda: model.init_params(jax.random.key(0), mcfg))
    return checkpoint.load_tree(path, template)
