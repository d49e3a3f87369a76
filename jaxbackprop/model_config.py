"""ModelConfig: the shapes and choices of one window model (:mod:`jaxbackprop.model` runs it).

It lives apart from the model's functions so that :mod:`jaxbackprop.config` and the command
line can build and check configurations without importing JAX.
"""

from __future__ import annotations

import dataclasses

from jaxbackprop.settings import ACTIVATIONS, HEADS, MAX_WINDOW, SENTENCE_HEADS, is_int, is_real


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and choices of one window model. Frozen, so it can be a static jit argument.

    Attributes:
      vocab_size: V, rows of the word embedding ``E``; None until it is sized from the data
        (the model refuses to run without it).
      embed_dim: d, columns of ``E``.
      window: n, words per window (odd, 1 ... :data:`~jaxbackprop.settings.MAX_WINDOW`; the centre
        word is classified).
      hidden_dim: H, hidden units.
      num_classes: C, entity classes (softmax and crf heads).
      activation: f, one of :data:`jaxbackprop.nonlinearities.ACTIVATIONS`.
      head: ``"softmax"`` (cross-entropy over classes), ``"score"`` (the lecture's s = u.h
        with a max-margin loss against a corrupted window) or ``"crf"`` (the softmax head's
        per-token scores as emissions of a linear-chain CRF over whole sentences).
      l2: lambda of the ``lambda/2 (||W||^2 + ||U||^2)`` penalty (``u`` for the score head).
      dropout: rate of inverted dropout on h while training (0 disables it), and on x too unless
        input_dropout is given.
      input_dropout: rate of inverted dropout on x (None: the same as ``dropout``).
      feature_vocab_size: rows of the feature table ``F``: casing categories plus the ids of other
        per-word features such as suffixes (0: no features); sized from the data.
      feature_dim: dc, the width of ``F`` (0: no features).
      features_per_word: k, feature ids per word (1: the casing category only); the ``features``
        array of a batch has shape (B, n*k), word-major: the k ids of word 1, then those of word 2, ...
      fast: use :mod:`jaxbackprop.fast`'s versions of the row lookup and the dropout masks: the
        lookup gives equal values; the masks are drawn differently from the same key.
    """

    vocab_size: int | None = None
    embed_dim: int = 50
    window: int = 5
    hidden_dim: int = 200
    num_classes: int = 5
    activation: str = "relu"
    head: str = "softmax"
    l2: float = 0.0
    dropout: float = 0.0
    input_dropout: float | None = None
    feature_vocab_size: int = 0
    feature_dim: int = 0
    features_per_word: int = 1
    fast: bool = False

    def __post_init__(self):
        # every message starts with the field's name, so the CLI can name the option instead
        minimums = {"vocab_size": 1, "embed_dim": 1, "hidden_dim": 1, "num_classes": 2}
        for name, minimum in {**minimums, "feature_vocab_size": 0, "feature_dim": 0, "features_per_word": 1}.items():
            value = getattr(self, name)
            if name == "vocab_size" and value is None:
                continue  # not sized from the data yet
            if not is_int(value) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if not is_int(self.window) or not 1 <= self.window <= MAX_WINDOW or self.window % 2 != 1:
            raise ValueError(
                f"window must be an odd integer in [1, {MAX_WINDOW}] (a centre word and equal context), "
                f"got {self.window!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.head not in HEADS + SENTENCE_HEADS:
            raise ValueError(f"head must be one of {HEADS + SENTENCE_HEADS}, got {self.head!r}")
        if not (is_real(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be a number >= 0, got {self.l2!r}")
        if not (is_real(self.dropout) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        rate = self.input_dropout
        if rate is not None and not (is_real(rate) and 0 <= rate < 1):
            raise ValueError(f"input_dropout must be in [0, 1), or None for the dropout rate, got {rate!r}")
        # feature_vocab_size comes from the data: a config not yet sized may ask for a feature width
        if (self.feature_vocab_size > 0) != (self.feature_dim > 0) and (
            self.vocab_size is not None or self.feature_vocab_size > 0
        ):
            raise ValueError(
                "feature_vocab_size and feature_dim must both be 0 (no per-word features) or both > 0, "
                f"got feature_vocab_size={self.feature_vocab_size}, feature_dim={self.feature_dim}"
            )
        if not isinstance(self.fast, bool):
            raise ValueError(f"fast must be True or False, got {self.fast!r}")

    @property
    def uses_features(self) -> bool:
        """Whether windows carry per-word feature ids (and the params a feature table ``F``)."""
        return self.feature_vocab_size > 0

    @property
    def feature_width(self) -> int:
        """Feature ids per window, n*k: the width of a batch's ``features`` array."""
        return self.window * self.features_per_word

    @property
    def input_dim(self) -> int:
        """Length of x: n*d word-vector values plus n*k*dc feature values."""
        return self.window * (self.embed_dim + self.features_per_word * self.feature_dim)
