"""The names a run may choose from and the value checks of its settings, importable without JAX.

The command line builds its parser from these (and from :mod:`jaxbackprop.config`, which uses
them), so ``jaxbackprop --help`` and a wrong option answer at once instead of after the seconds
JAX takes to import. The modules that implement each choice import their tuple from here.
"""

from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "hardtanh", "relu", "leaky_relu", "prelu")  # nonlinearities.py
HEADS = ("softmax", "score")  # heads that classify one window on its own (model.py)
SENTENCE_HEADS = ("crf",)  # heads that score the tags of a whole sentence of windows together
INITS = ("xavier", "normal", "zeros")
DECODERS = ("viterbi", "argmax")  # decode.py
GRADS = ("manual", "autodiff")  # step.py
IMPLS = ("pure", "flax")
SCHEDULES = ("constant", "step", "exponential", "cosine", "cyclic", "warmup_cosine", "warmup_constant")  # optim.py
EMBEDDING_MODES = ("finetune", "frozen", "pretrained_frozen")
# optim.optimizer_names() read off the installed optax (tests/test_cli_errors.py checks they agree)
OPTIMIZERS = (
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "amsgrad",
    "fromage",
    "lamb",
    "lars",
    "lion",
    "noisy_sgd",
    "novograd",
    "radam",
    "rmsprop",
    "sgd",
    "sign_sgd",
    "signum",
    "yogi",
    "momentum",
)
SWEEP_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")  # a sweep's default axes
SWEEP_LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1e0)  # powers of ten

MAX_SEED = 2**32 - 1  # jax.random.key(seed) keeps 32 bits: key(2**32) is key(0)
MAX_WINDOW = 101  # words per window; wider windows only cost memory (the lecture's is 5)
MAX_BATCH_SIZE = 2**16  # windows (or crf tokens) per step: CoNLL's 204k windows in 4 steps, ~0.2 GB of x


def is_int(value) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
