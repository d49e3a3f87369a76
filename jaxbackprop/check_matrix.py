"""The gradient-check matrix: every activation x head x case, each run by :func:`gradcheck.check_gradients`.

The cases (:data:`MATRIX_CASES`) are batches built to stress the scatter-add into E and the
weighted mean: uniform random windows with dropout, repeated and padding-heavy words with
per-window weights, and a single window. The crf head, which reads whole sentences, has its own
three (:data:`SENTENCE_CASES`): sentences of random lengths with dropout; repeated words, a
sentence of one token, an empty one and padding, with weights; and one unpadded sentence.
:func:`check_params` draws float64 parameters whose gradients are all O(0.01 .. 1), so relative
errors mean something.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxbackprop import backprop, model
from jaxbackprop.gradcheck import GradCheckResult, check_gradients
from jaxbackprop.nonlinearities import ACTIVATIONS, PRELU_ALPHA_INIT

MATRIX_CASES = ("random windows", "repeated words", "batch of 1")
KINK_CASE = "at the kinks"  # the grader's only (check --impl): central differences across a kink mean nothing
SENTENCE_CASES = ("random sentences", "padded sentences", "one sentence")
MATRIX_HEADS = model.HEADS + model.SENTENCE_HEADS
SENTENCE_LENGTH = 6  # L, tokens per padded sentence in the crf cases


def cases_for(head: str) -> tuple:
    """The cases of the matrix for one head: batches of sentences for the crf head, else of windows."""
    return SENTENCE_CASES if head in model.SENTENCE_HEADS else MATRIX_CASES


def grader_cases_for(head: str) -> tuple:
    """The cases ``check --impl`` grades a student's steps on: the matrix's, and for a window head :data:`KINK_CASE`."""
    return cases_for(head) + ((KINK_CASE,) if head in model.HEADS else ())


def grader_case(case: str, seed: int, cfg: model.ModelConfig, params: dict):
    """``(params, batch, key)`` of one of :func:`grader_cases_for`'s cases; the kink case changes the parameters."""
    if case == KINK_CASE:
        return kink_case(seed, cfg, params)
    return (params, *case_batch(case, seed, cfg))


def kink_case(seed: int, cfg: model.ModelConfig, params: dict, batch_size: int = 8):
    """Parameters and a batch whose forward pass sits exactly on the kinks: z = 0 and, for relu-like f, margin = 0.

    Every hidden unit but the first has a zero row of W and b = 0, so its pre-activation is exactly 0
    in every window: relu'(0) = 0 (jax's convention, the reference's) is checked, not assumed. Unit 0
    reads the first number of the centre word's vector, 1 for each true centre word and 0 for each
    corrupted one; with u = (1, 0, ...) the score head's s = f(1), s_c = f(0), so for f(1) = 1, f(0) = 0
    (relu, leaky_relu, prelu, hardtanh) the margin 1 - s + s_c is exactly 0, where the hinge's
    derivative is taken to be 0. No dropout: the batch has :data:`MATRIX_CASES`' shapes, so it compiles nothing new.

    Returns:
      ``(params, batch, None)``.
    """
    rng = np.random.default_rng(seed)
    B, n, d, mid = batch_size, cfg.window, cfg.embed_dim, cfg.window // 2
    centres = rng.permutation(np.arange(3, cfg.vocab_size))[: 2 * B]  # B true, then B corrupted, all distinct
    windows = rng.integers(0, cfg.vocab_size, (B, n), dtype=np.int32)
    windows[:, mid] = centres[:B]
    E = np.array(params["E"])
    E[centres[:B], 0], E[centres[B:], 0] = 1.0, 0.0
    W = np.zeros_like(params["W"])
    W[0, mid * d] = 1.0
    params = {**params, "E": E, "W": W, "b": np.zeros_like(params["b"])}
    batch = {"windows": windows}
    if cfg.head == "softmax":
        batch["labels"] = rng.integers(0, cfg.num_classes, B, dtype=np.int32)
    else:
        params["u"] = np.eye(1, cfg.hidden_dim)[0]
        batch["corrupt"] = windows.copy()
        batch["corrupt"][:, mid] = centres[B:]
    if cfg.uses_features:
        batch["features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.feature_width), dtype=np.int32)
        if cfg.head == "score":
            batch["corrupt_features"] = batch["features"].copy()
    return params, batch, None


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

    For the crf head the cases are :data:`SENTENCE_CASES` (:func:`sentence_case_batch`).
    """
    if case not in cases_for(cfg.head):
        raise ValueError(f"case must be one of {cases_for(cfg.head)} for the {cfg.head} head, got {case!r}")
    if cfg.head in model.SENTENCE_HEADS:
        return sentence_case_batch(case, seed, cfg, max(batch_size // 2, 1))
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


def sentence_windows(words, lengths, n: int):
    """Each token's window over its padded sentence, (S, L, n): ``<s>`` = 1 before, ``</s>`` = 2 after.

    Args:
      words: int (S, L) word ids (those past a sentence's length are ignored); lengths: (S,).
    """
    S, L = words.shape
    mid = n // 2
    padded = np.full((S, mid + L + mid), 2, words.dtype)
    padded[:, :mid] = 1
    for s, length in enumerate(lengths):
        padded[s, mid : mid + length] = words[s, :length]
    return np.stack([padded[:, t : t + n] for t in range(L)], axis=1)


def sentence_case_batch(case: str, seed: int, cfg: model.ModelConfig, num_sentences: int = 4):
    """A batch of padded sentences for the crf head, and the dropout key to use with it (or None).

    * ``"random sentences"``: random lengths in 1 .. L (one of full length), dropout active;
    * ``"padded sentences"``: each sentence repeats words, sentences share words; lengths L, 1, 0
      (an all-padding row) and a padded tail; the padding's labels are -1 (ignored); weighted mean;
    * ``"one sentence"``: a single sentence of L tokens, no padding.
    """
    rng = np.random.default_rng(seed)
    L = SENTENCE_LENGTH
    S = 1 if case == "one sentence" else max(num_sentences, 4)
    lengths = rng.integers(1, L + 1, S)
    lengths[0] = L
    words = rng.integers(3, cfg.vocab_size, (S, L), dtype=np.int32)
    weights = None
    if case == "padded sentences":
        lengths[1:4] = (1, 0, L - 2)
        words[:, 2:] = words[:, :-2]  # a word again two tokens later
        words[1::2] = words[0::2][: len(words[1::2])]  # the same words in several sentences
        weights = np.linspace(0.5, 1.5, S)
    mask = np.arange(L)[None, :] < lengths[:, None]
    labels = np.where(mask, rng.integers(0, cfg.num_classes, (S, L)), -1 if case == "padded sentences" else 0)
    batch = {"windows": sentence_windows(words, lengths, cfg.window), "labels": labels.astype(np.int32), "mask": mask}
    if cfg.uses_features:
        batch["features"] = rng.integers(0, cfg.feature_vocab_size, (S, L, cfg.feature_width), dtype=np.int32)
    if weights is not None:
        batch["weights"] = weights
    return batch, (jax.random.key(seed) if case == "random sentences" else None)


# the model of every check: small, with per-word features (two per word), L2 and dropout
MATRIX_MODEL = dict(vocab_size=30, embed_dim=4, window=5, hidden_dim=10, num_classes=5, l2=0.01, dropout=0.2)
MATRIX_MODEL.update(feature_vocab_size=4, feature_dim=2, features_per_word=2)


def check_matrix(
    *, activations=None, heads=MATRIX_HEADS, cases=None, batch_size: int = 8, seed: int = 0, **check_kwargs
):
    """Run :func:`check_gradients` over activations x heads x cases; yields one result each.

    Args:
      activations, heads: the axes of the matrix (default: all of them).
      cases: only these cases (default: every case of each head, :func:`cases_for`).
      batch_size: windows per batch (the "batch of 1" case has one; the crf head takes half as
        many sentences, at least 4).
      seed: seeds the parameters, the batches and the directions.
      **check_kwargs: passed to :func:`check_gradients` (``directions``, ``max_full``, ``step``).

    A gradient of the wrong shape (a transposed dW in the pass under test) is a failed result whose
    ``error`` names the step, the tensor and both shapes; the matrix goes on with the next check.
    """
    for activation in activations or ACTIVATIONS:
        for head in heads:
            cfg = model.ModelConfig(activation=activation, head=head, **MATRIX_MODEL)
            params = check_params(seed, cfg)
            for i, case in enumerate(c for c in cases_for(head) if cases is None or c in cases):
                batch, key = case_batch(case, seed + 1 + i, cfg, batch_size)
                label = f"{activation} / {head} / {case}"
                try:
                    yield check_gradients(params, batch, cfg, key=key, label=label, seed=seed, **check_kwargs)
                except backprop.GradientShapeError as err:
                    yield GradCheckResult((), label, error=str(err).removeprefix(f"{label}: "))
