"""Training and evaluation: one jitted optax step, an epoch loop, metrics and checkpoints.

The gradient source (``"manual"``: hand-derived backprop, ``"autodiff"``: ``jax.grad``) and the
model implementation (``"pure"`` functions or the ``"flax"`` module) are swapped inside the same
jitted step; with equal seeds they reach the same parameters up to float round-off.
"""

from __future__ import annotations

import dataclasses
import functools
import json
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
        for name, allowed in (("grad", GRADS), ("impl", IMPLS), ("schedule", SCHEDULES), ("embeddings_mode", EMBEDDING_MODES),
                              ("decode", decode.DECODERS)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not hasattr(optax, self.optimizer) and self.optimizer != "momentum":
            raise ValueError(f"optimizer must name an optax optimizer (sgd, momentum, adagrad, rmsprop, adam, adamw, ...), got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "decay_epochs", "min_count", "suffix_min_count"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if isinstance(self.suffix_len, bool) or not isinstance(self.suffix_len, int) or self.suffix_len < 0:
            raise ValueError(f"suffix_len must be an integer >= 0, got {self.suffix_len!r}")
        if not 0 <= self.word_dropout < 1:
            raise ValueError(f"word_dropout must be in [0, 1), got {self.word_dropout!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
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
    """
    words, vectors = pretrained if pretrained is not None else ((), None)
    vocab = data.build_vocab(train_sents, min_count=min_count, extra_words=words, suffix_len=suffix_len, suffix_min_count=suffix_min_count)
    tags = data.tags_from(train_sents)
    index = data.make_tag_index(tags)
    splits = [data.make_windows(s, vocab, index, window) if s is not None else None for s in (train_sents, dev_sents, test_sents)]
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


def train_and_evaluate(cfg: TrainConfig, prepared: Prepared, run_dir, *, resume=False, progress=True, log=print) -> dict:
    """Train on ``prepared.train``, select the best epoch on dev F1, evaluate it on test.

    Writes into ``run_dir``: ``config.json``, ``vocab.json``, ``metrics.jsonl`` (one object per
    epoch), ``checkpoint.npz`` (params + optimizer state after the last finished epoch, for
    ``resume``), ``best.npz`` (params of the best dev epoch), ``learning_curve.png`` and
    ``summary.json``. Returns the summary.

    Raises:
      TrainingDiverged: the loss became non-finite; the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    mcfg, params = init_run_params(cfg, prepared)
    steps_per_epoch = math.ceil(len(prepared.train.windows) / cfg.batch_size)
    opt_state, step = make_step_for(cfg, mcfg, params, steps_per_epoch)
    history, start_epoch, best = [], 1, {"f1": -1.0, "epoch": 0}
    if resume and (run_dir / "checkpoint.npz").exists():
        (params, opt_state), meta = checkpoint.load_tree(run_dir / "checkpoint.npz", (params, opt_state))
        start_epoch, best = meta["epoch"] + 1, meta["best"]
        history = [r for r in checkpoint.read_jsonl(run_dir / "metrics.jsonl") if r["epoch"] <= meta["epoch"]]
        log(f"resuming {run_dir} after epoch {meta['epoch']} (best dev F1 {best['f1']:.4f} at epoch {best['epoch']})")
    else:
        _write_run_files(run_dir, cfg, mcfg, prepared)
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        params_new, opt_state_new, train_loss = run_epoch(step, params, opt_state, prepared.train, cfg, mcfg, epoch, steps_per_epoch, progress)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"epoch {epoch}: the training loss became {train_loss} (learning rate {cfg.learning_rate:g} too large?); "
                f"stopped, the last good checkpoint (epoch {epoch - 1}) is kept in {run_dir}"
            )
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
            checkpoint.save_tree(run_dir / "best.npz", params, {"epoch": epoch, "dev_f1": dev["f1"]})
        checkpoint.save_tree(run_dir / "checkpoint.npz", (params, opt_state), {"epoch": epoch, "best": best})
        checkpoint.write_jsonl(run_dir / "metrics.jsonl", history)
        log(_epoch_line(row, cfg.epochs))
        if cfg.patience and epoch - best["epoch"] >= cfg.patience:
            log(f"early stop: no better dev F1 for {cfg.patience} epochs")
            break
    return _finish(run_dir, cfg, mcfg, prepared, history, best, log)


def _write_run_files(run_dir: Path, cfg, mcfg, prepared: Prepared) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl", "checkpoint.npz", "best.npz", "summary.json"):
        (run_dir / stale).unlink(missing_ok=True)
    checkpoint.write_json(run_dir / "config.json", {
        "train": dataclasses.asdict(cfg), "model": dataclasses.asdict(mcfg), "tags": list(prepared.tags),
        "embedding_coverage": prepared.coverage, "environment": environment(), "command": sys.argv,
    })  # fmt: skip
    checkpoint.write_text(run_dir / "vocab.json", prepared.vocab.to_json())


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
    """``(train_cfg, model_cfg, vocab, tags, best_params)`` of a finished (or running) run."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir}: no config.json -- not a jaxbackprop run directory")
    conf = json.loads((run_dir / "config.json").read_text())
    cfg, mcfg = TrainConfig(**conf["train"]), model.ModelConfig(**conf["model"])
    vocab = data.Vocab.from_json((run_dir / "vocab.json").read_text())
    params, _ = load_params(run_dir, mcfg)
    return cfg, mcfg, vocab, tuple(conf["tags"]), params


def load_params(run_dir, mcfg: model.ModelConfig):
    path = Path(run_dir) / "best.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no best checkpoint yet (did an epoch finish?)")
    template = jax.eval_shape(lambda: model.init_params(jax.random.key(0), mcfg))
    return checkpoint.load_tree(path, template)
