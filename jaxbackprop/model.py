"""The window-based NER classifier as pure functions over a plain dict of parameters.

A window of ``n`` word ids is looked up in ``E`` and concatenated into ``x``; optionally ``k``
feature ids per word (its casing, and e.g. its suffix) are looked up in their own small table
``Ecase`` and appended to ``x``::

    x = [E[w_1]; ...; E[w_n]; Ecase[c_1]; ...; Ecase[c_nk]]      (n*d + n*k*dc,)
    z = W x + b                                                  (H,)
    h = f(z)                                                     (H,)
    softmax head:  logits = U h + c                              (C,)
    score head:    s = u . h                                     ()

Nothing here knows about files, optimizers or the CLI. Gradients live in
:mod:`jaxbackprop.backprop` (by hand) and come from ``jax.grad(loss)`` (by autodiff).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import nonlinearities as nl

HEADS = ("softmax", "score")
INITS = ("xavier", "normal", "zeros")
NORMAL_INIT_STD = 0.01  # "small random numbers" for init="normal" and for random word vectors
MARGIN = 1.0  # the lecture's max-margin: J = max(0, MARGIN - s + s_c)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and choices of one window model. Frozen, so it can be a static jit argument.

    Attributes:
      vocab_size: V, rows of the word embedding ``E``.
      embed_dim: d, columns of ``E``.
      window: n, words per window (odd, >= 1; the centre word is classified).
      hidden_dim: H, hidden units.
      num_classes: C, entity classes (softmax head only).
      activation: f, one of :data:`jaxbackprop.nonlinearities.ACTIVATIONS`.
      head: ``"softmax"`` (cross-entropy over classes) or ``"score"`` (the lecture's s = u.h
        with a max-margin loss against a corrupted window).
      l2: lambda of the ``lambda/2 (||W||^2 + ||U||^2)`` penalty (``u`` for the score head).
      dropout: rate of inverted dropout on h while training (0 disables it), and on x too unless
        input_dropout is given.
      input_dropout: rate of inverted dropout on x (None: the same as ``dropout``).
      casing_size: rows of the feature table ``Ecase``: casing categories, plus the ids of any
        other per-word feature (0: no features).
      casing_dim: dc, width of a row of ``Ecase`` (used when casing_size > 0).
      features_per_word: k, feature ids per word (1: casing only); the ``casing`` array of a batch
        has shape (B, n*k), word-major: the k ids of word 1, then those of word 2, ...
    """

    vocab_size: int
    embed_dim: int = 50
    window: int = 5
    hidden_dim: int = 200
    num_classes: int = 5
    activation: str = "relu"
    head: str = "softmax"
    l2: float = 0.0
    dropout: float = 0.0
    input_dropout: float | None = None
    casing_size: int = 0
    casing_dim: int = 0
    features_per_word: int = 1

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "hidden_dim"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("window", self.window, minimum=1)
        if self.window % 2 != 1:
            raise ValueError(f"window must be odd (a centre word and equal context), got {self.window}")
        _require_int("num_classes", self.num_classes, minimum=2)
        if self.activation not in nl.ACTIVATIONS:
            raise ValueError(f"activation must be one of {nl.ACTIVATIONS}, got {self.activation!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if not (isinstance(self.l2, (int, float)) and self.l2 >= 0 and math.isfinite(self.l2)):
            raise ValueError(f"l2 must be a finite number >= 0, got {self.l2!r}")
        for name in ("dropout", "input_dropout"):
            rate = getattr(self, name)
            if not (rate is None and name == "input_dropout") and not (isinstance(rate, (int, float)) and 0 <= rate < 1):
                raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
        _require_int("casing_size", self.casing_size, minimum=0)
        _require_int("casing_dim", self.casing_dim, minimum=0)
        _require_int("features_per_word", self.features_per_word, minimum=1)
        if (self.casing_size > 0) != (self.casing_dim > 0):
            raise ValueError(
                "casing_size and casing_dim must both be 0 (no casing feature) or both > 0, "
                f"got casing_size={self.casing_size}, casing_dim={self.casing_dim}"
            )

    @property
    def uses_casing(self) -> bool:
        return self.casing_size > 0

    @property
    def feature_width(self) -> int:
        """Feature ids per window, n*k: the width of a batch's ``casing`` array."""
        return self.window * self.features_per_word

    @property
    def input_dim(self) -> int:
        """Length of x: n*d word features plus n*k*dc casing (and other feature) values."""
        return self.window * (self.embed_dim + self.features_per_word * self.casing_dim)


def _require_int(name, value, *, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _xavier(key, shape, dtype):
    # Glorot & Bengio (2010): U(-r, r), r = sqrt(6 / (fan_in + fan_out)), keeps activation
    # variance roughly constant from layer to layer.
    fan_out, fan_in = (shape[0], shape[1]) if len(shape) == 2 else (1, shape[0])
    r = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -r, r)


def _weight(key, shape, init, dtype):
    if init == "xavier":
        return _xavier(key, shape, dtype)
    if init == "normal":
        return NORMAL_INIT_STD * jax.random.normal(key, shape, dtype)
    return jnp.zeros(shape, dtype)


def init_params(key, cfg: ModelConfig, *, init: str = "xavier", embeddings=None, dtype=jnp.float32):
    """Fresh parameters: a dict in the lecture's names.

    Args:
      key: a ``jax.random`` key.
      cfg: the model's shapes.
      init: how W and U (or u) start: ``"xavier"``, ``"normal"`` (N(0, 0.01^2)) or ``"zeros"``.
        Word vectors are never zero-initialised: without pretrained vectors they are N(0, 0.01^2).
      embeddings: optional (V, d) array of pretrained word vectors that seeds ``E``.
      dtype: float dtype of every parameter.

    Returns:
      ``{"E": (V, d), "W": (H, input_dim), "b": (H,)}`` plus ``"U": (C, H), "c": (C,)`` for the
      softmax head or ``"u": (H,)`` for the score head, ``"Ecase": (casing_size, dc)`` with
      casing, and ``"alpha": ()`` for prelu.

    >>> import jax
    >>> p = init_params(jax.random.key(0), ModelConfig(vocab_size=10, embed_dim=4, hidden_dim=3))
    >>> {k: v.shape for k, v in sorted(p.items())}
    {'E': (10, 4), 'U': (5, 3), 'W': (3, 20), 'b': (3,), 'c': (5,)}
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    kE, kW, kU, kC = jax.random.split(key, 4)
    V, d, H = cfg.vocab_size, cfg.embed_dim, cfg.hidden_dim
    if embeddings is None:
        E = NORMAL_INIT_STD * jax.random.normal(kE, (V, d), dtype)
    else:
        E = jnp.asarray(embeddings, dtype)
        if E.shape != (V, d):
            raise ValueError(f"embeddings must have shape (vocab_size, embed_dim) = {(V, d)}, got {E.shape}")
    params = {"E": E, "W": _weight(kW, (H, cfg.input_dim), init, dtype), "b": jnp.zeros((H,), dtype)}
    if cfg.head == "softmax":
        params["U"] = _weight(kU, (cfg.num_classes, H), init, dtype)
        params["c"] = jnp.zeros((cfg.num_classes,), dtype)
    else:
        params["u"] = _weight(kU, (H,), init, dtype)
    if cfg.uses_casing:
        params["Ecase"] = NORMAL_INIT_STD * jax.random.normal(kC, (cfg.casing_size, cfg.casing_dim), dtype)
    if cfg.activation == "prelu":
        params["alpha"] = jnp.asarray(nl.PRELU_ALPHA_INIT, dtype)
    return params


def param_shapes(cfg: ModelConfig) -> dict:
    """The shape of every parameter tensor ``init_params`` makes for ``cfg``."""
    shapes = {"E": (cfg.vocab_size, cfg.embed_dim), "W": (cfg.hidden_dim, cfg.input_dim), "b": (cfg.hidden_dim,)}
    if cfg.head == "softmax":
        shapes.update(U=(cfg.num_classes, cfg.hidden_dim), c=(cfg.num_classes,))
    else:
        shapes["u"] = (cfg.hidden_dim,)
    if cfg.uses_casing:
        shapes["Ecase"] = (cfg.casing_size, cfg.casing_dim)
    if cfg.activation == "prelu":
        shapes["alpha"] = ()
    return shapes


# ----------------------------------------------------------------------------- input checks


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_ids(name, ids, width, upper):
    """Raise ValueError unless ``ids`` is an integer (B, width) array with values in [0, upper).

    Shapes and dtypes are checked always (also under jit); values only for concrete arrays,
    because a traced array has none. Out-of-range ids under jit would be silently clamped by
    XLA's gather, so data is checked once, eagerly, before it enters a jitted loop.
    """
    shape = getattr(ids, "shape", None)
    dtype = getattr(ids, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"{name} must be an integer array of shape (batch, {width}), got {type(ids).__name__}")
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {dtype}")
    if len(shape) != 2 or shape[1] != width:
        raise ValueError(f"{name} must have shape (batch, {width}) for a window of {width}, got {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: a batch needs at least one window")
    if _is_concrete(ids):
        values = np.asarray(ids)
        bad = np.argwhere((values < 0) | (values >= upper))
        if bad.size:
            row, col = bad[0]
            raise ValueError(
                f"{name}[{row}, {col}] = {values[row, col]} is out of range [0, {upper}) "
                f"({len(bad)} id(s) out of range in all)"
            )


def batch_keys(cfg: ModelConfig) -> tuple:
    """Required keys of a training batch for ``cfg`` (``"weights"`` is always optional)."""
    keys = ("windows", "labels") if cfg.head == "softmax" else ("windows", "corrupt")
    if cfg.uses_casing:
        keys += ("casing",) if cfg.head == "softmax" else ("casing", "corrupt_casing")
    return keys


def check_batch(batch, cfg: ModelConfig) -> None:
    """Raise ValueError naming the problem if ``batch`` does not fit ``cfg``."""
    if not isinstance(batch, dict):
        raise ValueError(f"batch must be a dict with keys {batch_keys(cfg)}, got {type(batch).__name__}")
    required = batch_keys(cfg)
    missing = [k for k in required if k not in batch]
    unexpected = [k for k in batch if k not in required + ("weights",)]
    if missing or unexpected:
        raise ValueError(
            f"batch keys do not match the {cfg.head} head"
            f"{' with casing' if cfg.uses_casing else ''}: expected {list(required)} (+ optional 'weights'), "
            f"missing {missing}, unexpected {unexpected}"
        )
    B = batch["windows"].shape[0] if hasattr(batch["windows"], "shape") else None
    for k in required:
        if k in ("windows", "corrupt"):
            check_ids(f"batch[{k!r}]", batch[k], cfg.window, cfg.vocab_size)
        elif k in ("casing", "corrupt_casing"):
            check_ids(f"batch[{k!r}]", batch[k], cfg.feature_width, cfg.casing_size)
        if batch[k].shape[0] != B:
            raise ValueError(f"batch[{k!r}] has {batch[k].shape[0]} rows but batch['windows'] has {B}")
    if cfg.head == "softmax":
        labels = batch["labels"]
        if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"batch['labels'] must be integer class ids of shape ({B},), got {labels.dtype} {labels.shape}")
        if _is_concrete(labels):
            bad = np.flatnonzero((np.asarray(labels) < 0) | (np.asarray(labels) >= cfg.num_classes))
            if bad.size:
                raise ValueError(
                    f"batch['labels'][{bad[0]}] = {int(labels[bad[0]])} is out of range [0, {cfg.num_classes})"
                )
    if "weights" in batch and tuple(batch["weights"].shape) != (B,):
        raise ValueError(f"batch['weights'] must have shape ({B},), got {tuple(batch['weights'].shape)}")


# ----------------------------------------------------------------------------- forward pass


def dropout_masks(key, cfg: ModelConfig, batch_size: int, dtype):
    """Inverted-dropout masks for x and h: 0 with prob. rate, else 1/(1-rate).

    Returns None when no dropout applies (no key, or rate 0). Shared by the model and the
    hand-derived backward pass, so both see exactly the same masks for the same key.
    """
    rate_x = cfg.dropout if cfg.input_dropout is None else cfg.input_dropout
    if key is None or (cfg.dropout == 0 and rate_x == 0):
        return None
    kx, kh = jax.random.split(key)
    return _mask(kx, rate_x, (batch_size, cfg.input_dim), dtype), _mask(kh, cfg.dropout, (batch_size, cfg.hidden_dim), dtype)


def _mask(key, rate, shape, dtype):
    """An inverted-dropout mask of ``shape`` (rows, cols): 0 with probability ``rate`` (to 2^-16), else 1/keep.

    Each 32-bit random draw gives two 16-bit uniforms: random-bit generation dominated the
    training step (``bernoulli`` draws one 32-bit value and a float per entry), and halving the
    draws makes the default CoNLL step about 12% faster on a 2-core CPU.
    """
    threshold = np.uint32(round(rate * 2**16))  # drop iff a 16-bit uniform < threshold
    keep = 1.0 - threshold / 2**16
    rows, cols = shape
    bits = jax.random.bits(key, (rows, (cols + 1) // 2), jnp.uint32)
    halves = jnp.stack([bits & 0xFFFF, bits >> 16], axis=-1).reshape(rows, -1)[:, :cols]
    return jnp.where(halves >= threshold, jnp.asarray(1.0 / keep, dtype), jnp.asarray(0.0, dtype))


def window_vectors(params, windows, cfg: ModelConfig, casing=None):
    """x: each window's word vectors (then casing vectors) concatenated, (B, input_dim)."""
    x = lookup_rows(params["E"], windows)
    if cfg.uses_casing:
        if casing is None:
            raise ValueError(f"this model uses casing features: pass casing ids of shape (batch, {cfg.feature_width})")
        x = jnp.concatenate([x, lookup_rows(params["Ecase"], casing)], axis=1)
    return x


def hidden(params, windows, cfg: ModelConfig, casing=None, *, key=None):
    """h = f(W x + b) for each window, (B, H); dropout on x and h when ``key`` is given."""
    x = window_vectors(params, windows, cfg, casing)
    masks = dropout_masks(key, cfg, windows.shape[0], x.dtype)
    if masks is not None:
        x = x * masks[0]
    z = x @ params["W"].T + params["b"][None, :]
    h = nl.apply(cfg.activation, z, params.get("alpha"))
    if masks is not None:
        h = h * masks[1]
    return h


def forward(params, windows, cfg: ModelConfig, casing=None, *, key=None):
    """Logits (B, C) for the softmax head, scores (B,) for the score head.

    Args:
      params: as made by :func:`init_params`.
      windows: int (B, window) word ids.
      cfg: the model config (static under jit).
      casing: int (B, n*k) casing (and other feature) ids, required iff ``cfg.casing_size > 0``.
      key: dropout key; None (the default) means evaluation, no dropout.

    >>> import jax, jax.numpy as jnp
    >>> cfg = ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> forward(init_params(jax.random.key(0), cfg), jnp.array([[1, 2, 3]]), cfg).shape
    (1, 5)
    """
    check_ids("windows", windows, cfg.window, cfg.vocab_size)
    if cfg.uses_casing:
        check_ids("casing", casing, cfg.feature_width, cfg.casing_size)
    h = hidden(params, windows, cfg, casing, key=key)
    if cfg.head == "softmax":
        return h @ params["U"].T + params["c"][None, :]
    return h @ params["u"]


def l2_penalty(params, cfg: ModelConfig):
    """lambda/2 (||W||^2 + ||U||^2) -- weights only; biases, alpha and embeddings are not penalised."""
    head = params["U"] if cfg.head == "softmax" else params["u"]
    return 0.5 * cfg.l2 * (jnp.sum(params["W"] ** 2) + jnp.sum(head**2))


def _mean(values, weights):
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(weights * values) / jnp.sum(weights)


def per_example_loss(params, batch, cfg: ModelConfig, *, key=None):
    """Unpenalised loss of each window, (B,): cross-entropy, or the hinge max(0, 1 - s + s_c)."""
    if cfg.head == "softmax":
        logits = forward(params, batch["windows"], cfg, batch.get("casing"), key=key)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.take_along_axis(log_probs, batch["labels"][:, None], axis=1)[:, 0]
    k_true, k_corrupt = (None, None) if key is None else jax.random.split(key)
    s = forward(params, batch["windows"], cfg, batch.get("casing"), key=k_true)
    s_c = forward(params, batch["corrupt"], cfg, batch.get("corrupt_casing"), key=k_corrupt)
    margin = MARGIN - s + s_c
    # where, not maximum: jnp.maximum splits the gradient 0.5/0.5 at a tie, while the
    # lecture's subgradient (and backprop.py) uses 0 at the kink.
    return jnp.where(margin > 0, margin, 0.0)


def loss(params, batch, cfg: ModelConfig, *, key=None):
    """The training objective J: mean per-window loss plus the L2 penalty.

    Softmax head: mean cross-entropy of ``batch["labels"]``. Score head: the lecture's
    max-margin loss, mean of ``max(0, 1 - s(window) + s(corrupt))``. With ``batch["weights"]``
    (B,) the mean is weighted (padding rows get weight 0). The penalty
    ``l2/2 (||W||^2 + ||U or u||^2)`` leaves biases, alpha and the embeddings unpenalised.

    Args:
      params: as made by :func:`init_params`.
      batch: dict with int ``"windows"`` (B, n) and int ``"labels"`` (B,) for softmax, or
        ``"windows"`` and ``"corrupt"`` (B, n) for score; ``"casing"``/``"corrupt_casing"``
        (B, n*k) when the model uses casing; optional float ``"weights"`` (B,).
      cfg: the model config.
      key: dropout key (None: no dropout).

    >>> import jax, jax.numpy as jnp
    >>> cfg = ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> p = init_params(jax.random.key(0), cfg, init="zeros")
    >>> round(float(loss(p, {"windows": jnp.array([[1, 2, 3]]), "labels": jnp.array([0])}, cfg)), 4)  # log 5
    1.6094
    """
    check_batch(batch, cfg)
    return _mean(per_example_loss(params, batch, cfg, key=key), batch.get("weights")) + l2_penalty(params, cfg)


# ----------------------------------------------------------------------------- helpers


def lookup_rows(table, ids):
    """``table[ids]`` with each window's rows side by side: (B, n) ids -> (B, n * table width).

    Gathered as two halves of the batch joined by a concatenate: XLA's CPU backend runs a lone
    gather on one thread, but gathers feeding a concatenate become one loop fusion that it splits
    across cores -- 2-3x faster at B >= 512 on a 2-core CPU. Same values, same gradient.
    """
    B = ids.shape[0]
    halves = [ids] if B < 2 else [ids[: B // 2], ids[B // 2 :]]
    return jnp.concatenate([table[h] for h in halves]).reshape(B, ids.shape[1] * table.shape[1])
