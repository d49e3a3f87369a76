"""TrainConfig: everything that defines a training run, with a ModelConfig inside it.

The model's architecture is a :class:`~jaxbackprop.model.ModelConfig` held in ``config.model``;
its data-dependent sizes (vocabulary, classes, feature table) stay unset until
:func:`jaxbackprop.pipeline.model_config` fills them in from the data. Everything else -- the
optimizer, the schedule, the data settings, the gradient source -- is a field of the TrainConfig.

Command-line flags and sweep-table rows are flat (``--hidden-dim``, ``{"l2": 1e-3}``):
:func:`configure` routes each name to the dataclass that holds it, and :func:`flatten` is the
inverse. The help text of every flag is declared next to its field (``metadata["help"]``), and
the allowed values of a choice next to it too (``metadata["choices"]``), which is what the
configuration checks and the command line both read.
"""

from __future__ import annotations

import dataclasses

from jaxbackprop import settings
from jaxbackprop.model_config import ModelConfig
from jaxbackprop.settings import ACTIVATIONS, DECODERS, INITS, is_int, is_real

# The architecture fields of ModelConfig a run sets, and their help text. The model's other
# fields are sizes read off the data (vocab_size, num_classes, feature_vocab_size,
# features_per_word) and fast (training always opts in).
TRAIN_HEADS = ("softmax", "crf")  # heads trained on tags (the score head needs corrupted windows, not tags)
MODEL_HELP = {
    "window": "words per window (odd)",
    "hidden_dim": "hidden units H",
    "activation": "the nonlinearity f",
    "l2": "lambda of the L2 penalty on W and U",
    "dropout": "inverted-dropout rate on h (and on x unless --input-dropout is given)",
    "input_dropout": "inverted-dropout rate on x (None: the same as --dropout)",
    "feature_dim": (
        "width of the per-word feature vectors: casing category, and suffix with --suffix-len "
        "(0: no per-word features; --casing-dim is its old name)"
    ),
    "embed_dim": "word-vector width when no pretrained vectors are given",
    "head": (
        "softmax: each window classified on its own (cross-entropy per token); crf: the same per-token "
        "scores as emissions of a linear-chain CRF with learned transitions, trained on whole sentences "
        "(sentence log-likelihood; --batch-size still counts tokens, as whole sentences)"
    ),
}
MODEL_CHOICES = {"activation": ACTIVATIONS, "head": TRAIN_HEADS}
MODEL_FIELDS = tuple(MODEL_HELP)


def default_model() -> ModelConfig:
    """The architecture of the default run (the best found on CoNLL-2003), not yet sized."""
    return ModelConfig(
        window=7,
        hidden_dim=500,
        activation="relu",
        l2=0.0,
        dropout=0.3,
        input_dropout=None,
        feature_dim=8,
        embed_dim=50,
    )


def _field(default, text: str, choices=None):
    """A dataclass field with its help text (and allowed values) declared beside it."""
    metadata = {"help": text} if choices is None else {"help": text, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the defaults are the best found on CoNLL-2003).

    ``model`` holds the architecture (see :data:`MODEL_HELP`); each other field's meaning is its
    ``metadata["help"]`` (``jaxbackprop train --help`` lists them all). Build one with
    :func:`configure`, which takes the flat names of both.

    >>> config = configure(hidden_dim=16, epochs=2)
    >>> config.model.hidden_dim, config.epochs, config.model.vocab_size is None
    (16, 2, True)
    """

    model: ModelConfig = dataclasses.field(default_factory=default_model, metadata={"help": MODEL_HELP})
    init: str = _field("xavier", "initialisation of W and U", INITS)
    word_dropout: float = _field(
        0.05,
        "fraction of training word ids replaced by <unk> each step, so the unknown word's vector "
        "learns what an unseen word looks like",
    )
    suffix_len: int = _field(
        3,
        "also give each word its last SUFFIX_LEN letters as a feature, a row of the same table as "
        "the casing category (0: none; with --feature-dim 0 there is no table and no suffix)",
    )
    suffix_min_count: int = _field(5, 'suffixes seen fewer times in training share one "unseen suffix" row')
    optimizer: str = _field(
        "adam",
        "any optax optimizer taking a learning rate (sgd, momentum, adagrad, rmsprop, adam, adamw, ...); "
        '"momentum" is sgd with momentum 0.9',
    )
    learning_rate: float = _field(5e-3, "peak learning rate")
    schedule: str = _field(
        "cosine",
        "step: multiply by --decay-rate every --decay-epochs epochs; exponential: the smooth version; "
        "cyclic: triangular, period 2 * --decay-epochs epochs, between rate * --decay-rate and rate; "
        "warmup_cosine: linear warm-up over the first epoch, then cosine; warmup_constant: the same warm-up, "
        "then the peak rate",
        settings.SCHEDULES,
    )
    decay_epochs: int = _field(3, "epochs per decay step (step, exponential) or half cycle (cyclic)")
    decay_rate: float = _field(0.5, "factor per decay step (step, exponential); lowest fraction of the rate (cyclic)")
    epochs: int = _field(10, "passes over the training data")
    batch_size: int = _field(
        1024,
        "windows per step; with --head crf, whole sentences holding about this many tokens "
        "(batch_size / mean training sentence length sentences per step)",
    )
    patience: int = _field(0, "stop after this many epochs without a better dev F1 (0: never stop early)")
    seed: int = _field(0, "seeds initialisation, shuffling, dropout and word dropout")
    grad: str = _field("manual", "manual: hand-derived backprop; autodiff: jax.grad", settings.GRADS)
    impl: str = _field("pure", "pure: functions over a dict; flax: the NNX module", settings.IMPLS)
    embeddings_mode: str = _field(
        "finetune",
        "finetune: E is trained; frozen: E keeps its initial values; pretrained_frozen: the rows seeded "
        "from --embeddings keep their vectors, every other row (words without a vector, <unk>) trains",
        settings.EMBEDDING_MODES,
    )
    sparse: bool = _field(
        False,
        "update only the embedding rows present in each batch: rows-only sgd and adagrad, lazy Adam for "
        "every other optimizer; the dense parameters keep the optax optimizer. `jaxbackprop train` turns it on "
        "by itself for a vocabulary over 100,000 words with a hand-derived gradient (--no-sparse: the dense step)",
    )
    min_count: int = _field(2, "words seen fewer times in training become <unk> (unless pretrained)")
    decode: str = _field(
        "viterbi",
        "how dev/test/predicted tags are read off the model: viterbi (the most probable valid IOB2 sequence; "
        "with --head crf under the learned transitions too) or argmax (each token's most probable tag, "
        "for crf the largest emission); training is the same either way",
        DECODERS,
    )

    def __post_init__(self):
        # every message starts with the field's name, so the CLI can name the option instead
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"model must be a ModelConfig, got {type(self.model).__name__}")
        if self.model.head not in TRAIN_HEADS:
            raise ValueError(f"head must be one of {TRAIN_HEADS} to train on tagged data, got {self.model.head!r}")
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise ValueError(f"{f.name} must be one of {allowed}, got {getattr(self, f.name)!r}")
        if self.optimizer not in settings.OPTIMIZERS:
            raise ValueError(
                "optimizer must name an optax optimizer that takes a learning rate, one of "
                f"{settings.OPTIMIZERS}, got {self.optimizer!r}"
            )
        ranges = {  # (least, largest or None)
            "suffix_len": (0, None),
            "suffix_min_count": (1, None),
            "decay_epochs": (1, None),
            "epochs": (1, None),
            "batch_size": (1, settings.MAX_BATCH_SIZE),
            "patience": (0, None),
            "seed": (0, settings.MAX_SEED),
            "min_count": (1, None),
        }
        for name, (least, largest) in ranges.items():
            value = getattr(self, name)
            too_large = largest is not None and is_int(value) and value > largest
            if isinstance(value, bool) or not isinstance(value, int) or value < least or too_large:
                allowed = f">= {least}" if largest is None else f"in [{least}, {largest}]"
                raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
        if not (is_real(self.word_dropout) and 0 <= self.word_dropout < 1):
            raise ValueError(f"word_dropout must be a number in [0, 1), got {self.word_dropout!r}")
        for name in ("learning_rate", "decay_rate"):
            value = getattr(self, name)
            if not (is_real(value) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if not isinstance(self.sparse, bool):
            raise ValueError(f"sparse must be True or False, got {self.sparse!r}")
        if self.sparse and self.grad != "manual":
            raise ValueError("sparse=True needs grad='manual': only the hand-derived gradient yields E's rows")
        if self.impl == "flax" and self.grad != "autodiff":
            raise ValueError("impl='flax' needs grad='autodiff': the flax module is differentiated by jax.grad")


# TrainConfig's own fields, by flat name: every field but the model
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "model")


def configure(base: TrainConfig | None = None, **flat) -> TrainConfig:
    """A TrainConfig from flat field names: ``base`` (default: ``TrainConfig()``) with ``flat`` changed.

    Names in :data:`MODEL_FIELDS` go to ``config.model``, the others to the TrainConfig itself;
    this is how the command line, sweep tables and tests build configurations.

    Args:
      base: the configuration to change.
      **flat: new values, by flat field name (``hidden_dim=16``, ``learning_rate=1e-2``).

    Returns:
      The new, checked TrainConfig.

    Raises:
      ValueError: an unknown name (``"unknown TrainConfig fields ['lr']"``), or a value out of
        range (the message starts with the field's name).

    >>> configure(window=3, learning_rate=0.1).model.window
    3
    """
    base = TrainConfig() if base is None else base
    unknown = sorted(set(flat) - set(MODEL_FIELDS) - set(TRAIN_FIELDS))
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}; the fields are {[*MODEL_FIELDS, *TRAIN_FIELDS]}")
    model_changes = {k: v for k, v in flat.items() if k in MODEL_FIELDS}
    train_changes = {k: v for k, v in flat.items() if k not in MODEL_FIELDS}
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **model_changes), **train_changes)


def flatten(config: TrainConfig) -> dict:
    """``{flat name: value}`` of a TrainConfig: the model's :data:`MODEL_FIELDS`, then its own fields.

    The inverse of :func:`configure`: ``configure(**flatten(c)) == c`` for a config not yet sized.

    >>> list(flatten(TrainConfig()))[:3]
    ['window', 'hidden_dim', 'activation']
    """
    return {**{k: getattr(config.model, k) for k in MODEL_FIELDS}, **{k: getattr(config, k) for k in TRAIN_FIELDS}}
