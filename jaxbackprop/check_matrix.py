"""The gradient-check matrix: every activation x head x case, each run by :func:`gradcheck.check_gradients`.

The cases (:data:`MATRIX_CASES`) are batches built to stress the scatter-add into E and the
weighted mean: uniform random windows with dropout, repeated and padding-heavy words with
per-window weights, and a single window. :func:`check_params` draws float64 parameters whose
gradients are all O(0.01 .. 1), so relative errors mean something.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxbackprop import model
from jaxbackprop.gradcheck import check_gradients
from jaxbackprop.nonlinearities import ACTIVATIONS, PRELU_ALPHA_INIT

MATRIX_CASES = ("random windows", "repeated words", "batch of 1")


def check_params(seed: int, cfg: model.ModelConfig):
    """Float64 parameters whose gradients are all O(0.01 .. 1), so relative errors mean something.

    Glorot-scaled normal weights, N(0, 1) word and feature vectors, N(0, 0.5^2) biases: the
    hidden units sit on both sides of every kink and saturation instead of all near zero.
    Drawn with numpy so that a check compiles nothing but the functions under test.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in model.param_shapes(cfg).items():
        if name in ("W", "U", "u"):
            scale = np.sqrt(2.0 / (shape[-1] + (shape[0] if len(shape) == 2 else 1)))
        elif name in ("b", "c"):
            scale = 0.5
        else:
            scale = 1.0
        params[name] = scale * rng.standard_normal(shape)
    if "alpha" in params:
        params["alpha"] = np.float64(PRELU_ALPHA_INIT)
    return params


def case_batch(case: str, seed: int, cfg: model.ModelConfig, batch_size: int = 8):
    """A batch for one case of the matrix, and the dropout key to use with it (or None).

    * ``"random windows"``: uniform word ids, with dropout active;
    * ``"repeated words"``: every window repeats its centre word, several windows share words,
      the first window is padding-heavy (``<s>``=1, ``</s>``=2) and the mean is weighted;
    * ``"batch of 1"``: a single window.
    """
    if case not in MATRIX_CASES:
        raise ValueError(f"case must be one of {MATRIX_CASES}, got {case!r}")
    rng = np.random.default_rng(seed)
    B = 1 if case == "batch of 1" else batch_size
    n, mid = cfg.window, cfg.window // 2
    windows = rng.integers(0, cfg.vocab_size, (B, n), dtype=np.int32)
    weights = None
    if case == "repeated words":
        windows[:, 0] = windows[:, mid]  # a word twice in one window
        windows[1::2] = windows[0::2][: len(windows[1::2])]  # the same words in several windows
        windows[0, :mid], windows[0, mid + 1 :] = 1, 2
        weights = np.linspace(0.5, 1.5, B)
    batch = {"windows": windows}
    if cfg.head == "softmax":
        batch["labels"] = rng.integers(0, cfg.num_classes, B, dtype=np.int32)
    else:
        batch["corrupt"] = windows.copy()
        batch["corrupt"][:, mid] = rng.integers(0, cfg.vocab_size, B)
    if cfg.uses_features:
        batch["features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.feature_width), dtype=np.int32)
        if cfg.head == "score":
            # the corrupt window's centre is another word, with that word's own features
            k = cfg.features_per_word
            batch["corrupt_features"] = batch["features"].copy()
            batch["corrupt_features"][:, mid * k : (mid + 1) * k] = rng.integers(0, cfg.feature_vocab_size, (B, k))
    if weights is not None:
        batch["weights"] = weights
    return batch, (jax.random.key(seed) if case == "random windows" else None)


# the model of every check: small, with per-word features (two per word), L2 and dropout
MATRIX_MODEL = dict(vocab_size=30, embed_dim=4, window=5, hidden_dim=10, num_classes=5, l2=0.01, dropout=0.2)
MATRIX_MODEL.update(feature_vocab_size=4, feature_dim=2, features_per_word=2)


def check_matrix(
    *, activations=None, heads=model.HEADS, cases=MATRIX_CASES, batch_size: int = 8, seed: int = 0, **check_kwargs
):
    """Run :func:`check_gradients` over activations x heads x cases; yields one result each.

    Args:
      activations, heads, cases: the axes of the matrix (default: all of them).
      batch_size: windows per batch (the "batch of 1" case has one).
      seed: seeds the parameters, the batches and the directions.
      **check_kwargs: passed to :func:`check_gradients` (``directions``, ``max_full``, ``step``).
    """
    for activation in activations or ACTIVATIONS:
        for head in heads:
            cfg = model.ModelConfig(activation=activation, head=head, **MATRIX_MODEL)
            params = check_params(seed, cfg)
            for i, case in enumerate(cases):
                batch, key = case_batch(case, seed + 1 + i, cfg, batch_size)
                label = f"{activation} / {head} / {case}"
                yield check_gradients(params, batch, cfg, key=key, label=label, seed=seed, **check_kwargs)
