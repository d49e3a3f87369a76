"""The small models and random batches the measuring experiments run on (E02, E10), and the dense
SGD step E10 compares its rows-only step against."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from configs import e10

from jaxbackprop import check_matrix, model


def gradient_check_problem(V: int, d: int, H: int, B: int, seed: int, K: int = 1):
    """A tanh window model in float64 (gradients O(0.01 .. 1)), K random batches of B windows, and the first."""
    model_cfg = model.ModelConfig(vocab_size=V, embed_dim=d, window=5, hidden_dim=H, num_classes=5, activation="tanh")
    params = {k: jnp.asarray(v, jnp.float64) for k, v in check_matrix.check_params(seed, model_cfg).items()}
    rng = np.random.default_rng(seed + V)
    windows, labels = rng.integers(0, V, (K, B, 5), dtype=np.int32), rng.integers(0, 5, (K, B), dtype=np.int32)
    return model_cfg, params, (jnp.asarray(windows), jnp.asarray(labels)), {"windows": windows[0], "labels": labels[0]}


def sparse_step_problem(config: e10.Config, V: int):
    """A tanh model over V words, its params, and B random windows; window 0 holds one word twice."""
    c = config
    model_cfg = model.ModelConfig(
        vocab_size=V, embed_dim=c.embed_dim, window=c.window, hidden_dim=c.hidden_dim, activation="tanh"
    )
    rng = np.random.default_rng(c.seed)
    windows = rng.integers(0, V, (c.batch_size, c.window), dtype=np.int32)
    windows[0, 2] = windows[0, 0]  # positions 1 and 3 of the first window: the same word
    batch = {"windows": windows, "labels": rng.integers(0, 5, c.batch_size, dtype=np.int32)}
    return model_cfg, model.init_params(jax.random.key(c.seed), model_cfg), batch


def sgd_step(params, grads, lr):
    """The plain step of the lecture: theta <- theta - lr dJ/dtheta, every tensor, densely."""
    return {k: params[k] - lr * grads[k] for k in params}
