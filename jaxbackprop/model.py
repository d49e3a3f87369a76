"""The window-based NER classifier as pure functions over a plain dict of parameters.

A window of ``n`` word ids is looked up in ``E`` and concatenated into ``x``; optionally ``k``
feature ids per word (its casing category, and e.g. its suffix) are looked up in their own small
table ``F`` and appended to ``x``::

    x = [E[w_1]; ...; E[w_n]; F[c_1]; ...; F[c_nk]]              (n*d + n*k*dc,)
    z = W x + b                                                  (H,)
    h = f(z)                                                     (H,)
    softmax head:  logits = U h + c                              (C,)
    score head:    s = u . h                                     ()
    crf head:      e_t = U h_t + c per token of a sentence,      (L, C)
                   scored as a tag sequence by :mod:`jaxbackprop.crf`

Nothing here knows about files, optimizers or the CLI. Gradients: :mod:`jaxbackprop.backprop`
(by hand) and ``jax.grad(loss)``. Input checks: :mod:`jaxbackprop.batch_checks`; faster versions
of two lines: :mod:`jaxbackprop.fast`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxbackprop import crf, fast
from jaxbackprop import nonlinearities as nl
from jaxbackprop.batch_checks import check_batch, check_ids, check_sized
from jaxbackprop.model_config import ModelConfig
from jaxbackprop.settings import HEADS as HEADS  # the model's choices, re-exported
from jaxbackprop.settings import INITS, SENTENCE_HEADS

NORMAL_INIT_STD = 0.01  # "small random numbers" for init="normal" and for random word vectors
MARGIN = 1.0  # the lecture's max-margin: J = max(0, MARGIN - s + s_c)


# ----------------------------------------------------------------------------- parameters


def _weight(key, shape, init, dtype):
    if init == "xavier":
        # Glorot & Bengio (2010): U(-r, r), r = sqrt(6 / (fan_in + fan_out)), keeps activation
        # variance roughly constant from layer to layer; a vector u counts as (1, H)
        fan_out, fan_in = (shape[0], shape[1]) if len(shape) == 2 else (1, shape[0])
        r = math.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(key, shape, dtype, -r, r)
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
      softmax and crf heads or ``"u": (H,)`` for the score head; for the crf head the transition
      scores ``"T": (C, C)`` (``T[i, j]``: tag i followed by tag j), ``"start": (C,)`` and
      ``"end": (C,)``, all zeros, so that a fresh CRF is the per-token softmax (with zero
      transitions the sentence's distribution factorises over its tokens); ``"F":
      (feature_vocab_size, dc)`` with per-word features, and ``"alpha": ()`` for prelu.

    >>> import jax
    >>> p = init_params(jax.random.key(0), ModelConfig(vocab_size=10, embed_dim=4, hidden_dim=3))
    >>> {k: v.shape for k, v in sorted(p.items())}
    {'E': (10, 4), 'U': (5, 3), 'W': (3, 20), 'b': (3,), 'c': (5,)}
    """
    check_sized(cfg)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    kE, kW, kU, kF = jax.random.split(key, 4)
    V, d, H = cfg.vocab_size, cfg.embed_dim, cfg.hidden_dim
    if embeddings is None:
        E = NORMAL_INIT_STD * jax.random.normal(kE, (V, d), dtype)
    else:
        E = jnp.asarray(embeddings, dtype)
        if E.shape != (V, d):
            raise ValueError(f"embeddings must have shape (vocab_size, embed_dim) = {(V, d)}, got {E.shape}")
    params = {"E": E, "W": _weight(kW, (H, cfg.input_dim), init, dtype), "b": jnp.zeros((H,), dtype)}
    if cfg.head == "score":
        params["u"] = _weight(kU, (H,), init, dtype)
    else:
        params["U"] = _weight(kU, (cfg.num_classes, H), init, dtype)
        params["c"] = jnp.zeros((cfg.num_classes,), dtype)
    if cfg.head == "crf":
        C = cfg.num_classes
        params.update(T=jnp.zeros((C, C), dtype), start=jnp.zeros((C,), dtype), end=jnp.zeros((C,), dtype))
    if cfg.uses_features:
        params["F"] = NORMAL_INIT_STD * jax.random.normal(kF, (cfg.feature_vocab_size, cfg.feature_dim), dtype)
    if cfg.activation == "prelu":
        params["alpha"] = jnp.asarray(nl.PRELU_ALPHA_INIT, dtype)
    return params


def param_shapes(cfg: ModelConfig) -> dict:
    """The shape of every parameter :func:`init_params` makes for ``cfg``, no arrays made."""
    order = []  # init_params' key order, which callers draw values in; eval_shape sorts the keys

    def make():
        params = init_params(jax.random.key(0), cfg)
        order.extend(params)
        return params

    abstract = jax.eval_shape(make)
    return {k: abstract[k].shape for k in order}


# ----------------------------------------------------------------------------- forward pass


def lookup_rows(table, ids):
    """``table[ids]`` with each window's rows side by side: (B, m) ids -> (B, m * table width)."""
    B, m = ids.shape
    return table[ids].reshape(B, m * table.shape[1])


def window_vectors(params, windows, cfg: ModelConfig, features=None):
    """x: each window's word vectors (then feature vectors) concatenated, (B, input_dim)."""
    lookup = fast.lookup_rows if cfg.fast else lookup_rows  # the same values either way
    x = lookup(params["E"], windows)  # (B, n d)
    if cfg.uses_features:
        if features is None:
            raise ValueError(
                f"this model uses per-word features: pass feature ids of shape (batch, {cfg.feature_width})"
            )
        x = jnp.concatenate([x, lookup(params["F"], features)], axis=1)  # (B, n d + n k dc)
    return x


def dropout_mask(key, rate, shape, dtype):
    """Inverted dropout: 0 with probability ``rate``, else 1/keep, so the mask's mean is 1."""
    keep = 1.0 - rate
    return jax.random.bernoulli(key, keep, shape).astype(dtype) / jnp.asarray(keep, dtype)


def dropout_masks(key, cfg: ModelConfig, batch_size: int, dtype):
    """The masks ``(m_x (B, input_dim), m_h (B, H))`` for x and h; None without a key or a rate.

    Shared by the model and the hand-derived backward pass: the same key gives both the same masks.
    """
    rate_x = cfg.dropout if cfg.input_dropout is None else cfg.input_dropout
    if key is None or (cfg.dropout == 0 and rate_x == 0):
        return None
    mask = fast.dropout_mask if cfg.fast else dropout_mask  # fast: other draws, the same rate (to 2^-16)
    kx, kh = jax.random.split(key)
    m_x = mask(kx, rate_x, (batch_size, cfg.input_dim), dtype)
    m_h = mask(kh, cfg.dropout, (batch_size, cfg.hidden_dim), dtype)
    return m_x, m_h


def hidden(params, windows, cfg: ModelConfig, features=None, *, key=None):
    """h = f(W x + b) for each window, (B, H); dropout on x and h when ``key`` is given."""
    x = window_vectors(params, windows, cfg, features)
    masks = dropout_masks(key, cfg, windows.shape[0], x.dtype)
    if masks is not None:
        x = x * masks[0]
    z = x @ params["W"].T + params["b"][None, :]
    h = nl.apply(cfg.activation, z, params.get("alpha"))
    if masks is not None:
        h = h * masks[1]
    return h


def forward(params, windows, cfg: ModelConfig, features=None, *, key=None):
    """Logits (B, C) for the softmax head (the emissions of the crf head), scores (B,) for the score head.

    Args:
      params: as made by :func:`init_params`; cfg: the model config (static under jit).
      windows: int (B, n) word ids; features: int (B, n*k) feature ids, iff ``cfg.uses_features``.
      key: dropout key; None (the default) means evaluation, no dropout.

    >>> import jax, jax.numpy as jnp
    >>> cfg = ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> forward(init_params(jax.random.key(0), cfg), jnp.array([[1, 2, 3]]), cfg).shape
    (1, 5)
    """
    check_sized(cfg)
    check_ids("windows", windows, cfg.window, cfg.vocab_size)
    if cfg.uses_features:
        check_ids("features", features, cfg.feature_width, cfg.feature_vocab_size)
    h = hidden(params, windows, cfg, features, key=key)
    if cfg.head == "score":
        return h @ params["u"]
    return h @ params["U"].T + params["c"][None, :]


def sentence_emissions(params, windows, cfg: ModelConfig, features=None, *, key=None):
    """Emission scores e[s, t] = U h(window[s, t]) + c of every token of padded sentences, (S, L, C).

    The softmax head's logits, token by token: the (S, L) tokens are flattened to S*L windows, so
    dropout draws the same masks as :func:`jaxbackprop.backprop.window_fwd` on those rows.

    Args:
      params, cfg: a model with ``head="crf"``.
      windows: int (S, L, n); features: int (S, L, n*k), iff ``cfg.uses_features``.
      key: dropout key (None: no dropout).
    """
    S, L, n = windows.shape
    rows = None if features is None else features.reshape(S * L, features.shape[2])
    return forward(params, windows.reshape(S * L, n), cfg, rows, key=key).reshape(S, L, cfg.num_classes)


# ----------------------------------------------------------------------------- objective


def l2_penalty(params, cfg: ModelConfig):
    """lambda/2 (||W||^2 + ||U||^2) -- weights only; biases, alpha, embeddings and T, start, end are not penalised."""
    head = params["u"] if cfg.head == "score" else params["U"]
    return 0.5 * cfg.l2 * (jnp.sum(params["W"] ** 2) + jnp.sum(head**2))


def per_example_loss(params, batch, cfg: ModelConfig, *, key=None):
    """Unpenalised loss of each window, (B,): cross-entropy, or the hinge max(0, 1 - s + s_c);
    for the crf head, of each sentence, (S,): log Z - score(gold tags), 0 for an empty sentence."""
    if cfg.head == "crf":
        e = sentence_emissions(params, batch["windows"], cfg, batch.get("features"), key=key)
        return crf.sentence_nll(e, batch["labels"], batch["mask"], params["T"], params["start"], params["end"])
    if cfg.head == "softmax":
        logits = forward(params, batch["windows"], cfg, batch.get("features"), key=key)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.take_along_axis(log_probs, batch["labels"][:, None], axis=1)[:, 0]
    k_true, k_corrupt = (None, None) if key is None else jax.random.split(key)
    s = forward(params, batch["windows"], cfg, batch.get("features"), key=k_true)
    s_c = forward(params, batch["corrupt"], cfg, batch.get("corrupt_features"), key=k_corrupt)
    margin = MARGIN - s + s_c
    # where, not maximum: jnp.maximum splits the gradient 0.5/0.5 at a tie, while the
    # lecture's subgradient (and backprop.py) uses 0 at the kink.
    return jnp.where(margin > 0, margin, 0.0)


def loss(params, batch, cfg: ModelConfig, *, key=None):
    """The training objective J: mean per-window loss plus :func:`l2_penalty`.

    The per-window loss is :func:`per_example_loss`; with ``batch["weights"]`` (B,) the mean is
    weighted (padding rows get weight 0). For the crf head the mean runs over the non-empty
    sentences (:func:`jaxbackprop.crf.sentence_weights`): an all-padding row is left out, so
    appending one changes nothing.

    Args:
      params: as made by :func:`init_params`; cfg: the model config.
      batch: dict with int ``"windows"`` (B, n) and int ``"labels"`` (B,) for softmax, or
        ``"windows"`` and ``"corrupt"`` (B, n) for score; ``"features"``/``"corrupt_features"``
        (B, n*k) when the model uses features; optional float ``"weights"`` (B,). For crf: padded
        sentences, ``"windows"`` (S, L, n), ``"labels"`` (S, L), bool ``"mask"`` (S, L), optional
        ``"features"`` (S, L, n*k) and ``"weights"`` (S,) (:func:`jaxbackprop.crf.check_sentence_batch`).
      key: dropout key (None: no dropout).

    >>> import jax, jax.numpy as jnp
    >>> cfg = ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> p = init_params(jax.random.key(0), cfg, init="zeros")
    >>> round(float(loss(p, {"windows": jnp.array([[1, 2, 3]]), "labels": jnp.array([0])}, cfg)), 4)  # log 5
    1.6094
    """
    validate_batch(batch, cfg)
    per_window = per_example_loss(params, batch, cfg, key=key)  # (B,)
    weights = batch.get("weights")
    if cfg.head == "crf":
        w = crf.sentence_weights(batch["mask"], weights, per_window.dtype)
        return jnp.sum(w * per_window) + l2_penalty(params, cfg)
    mean = jnp.mean(per_window) if weights is None else jnp.sum(weights * per_window) / jnp.sum(weights)
    return mean + l2_penalty(params, cfg)


def validate_batch(batch, cfg: ModelConfig) -> None:
    """Raise ValueError naming the problem if ``batch`` does not fit ``cfg``: windows for the window
    heads (:func:`jaxbackprop.batch_checks.check_batch`), padded sentences for the crf head."""
    if cfg.head in SENTENCE_HEADS:
        crf.check_sentence_batch(batch, cfg)
    else:
        check_batch(batch, cfg)
