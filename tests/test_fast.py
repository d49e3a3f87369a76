"""jaxbackprop.fast against the plain lines of model.py: the two-halves gather copies the same
values, the 16-bit dropout masks have the right values and rate, and ModelConfig(fast=True)
changes nothing but how the masks are drawn."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbackprop import ModelConfig, fast, init_params, loss, manual_value_and_grad, model
from tests.helpers import assert_trees_close

RTOL = 1e-10  # manual vs jax.grad in float64, as in test_backprop


@pytest.mark.parametrize("B", [1, 2, 7, 64, 513])
@pytest.mark.parametrize("width", [1, 3, 8])
def test_two_halves_gather_equals_plain_gather_bitwise(B, width):
    rng = np.random.default_rng(B * 10 + width)
    table = jnp.asarray(rng.normal(size=(23, width)).astype(np.float32))
    ids = jnp.asarray(rng.integers(0, 23, (B, 5)), jnp.int32)
    plain, halves = model.lookup_rows(table, ids), fast.lookup_rows(table, ids)
    assert halves.shape == plain.shape == (B, 5 * width) and halves.dtype == plain.dtype
    assert np.asarray(halves).tobytes() == np.asarray(plain).tobytes()  # a gather copies values
    jitted = jax.jit(fast.lookup_rows)(table, ids)
    assert np.asarray(jitted).tobytes() == np.asarray(plain).tobytes()


def test_two_halves_gather_has_the_plain_gradient(x64):
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.normal(size=(6, 3)))
    ids = jnp.asarray(rng.integers(0, 6, (9, 4)), jnp.int32)  # 36 ids over 6 rows: many repeats
    upstream = jnp.asarray(rng.normal(size=(9, 12)))

    def grad_of(lookup):
        return jax.grad(lambda t: jnp.sum(lookup(t, ids) * upstream))(table)

    plain, halves = grad_of(model.lookup_rows), grad_of(fast.lookup_rows)
    np.testing.assert_allclose(halves, plain, rtol=1e-12)  # repeated rows may be summed in another order


@pytest.mark.parametrize("mask", [fast.dropout_mask, model.dropout_mask], ids=["fast", "plain"])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.9])
def test_dropout_mask_values_and_rate(mask, rate):
    rows, cols = 1000, 1001  # an odd width: the fast mask cuts the spare 16-bit half
    m = np.asarray(mask(jax.random.key(0), rate, (rows, cols), jnp.float32))
    assert m.shape == (rows, cols) and m.dtype == np.float32
    values = np.unique(m)
    assert len(values) == 2 and values[0] == 0.0
    np.testing.assert_allclose(values[1], 1.0 / (1.0 - rate), rtol=1e-4)  # the fast rate is a multiple of 2^-16
    n = m.size
    band = 5.0 * np.sqrt(rate * (1.0 - rate) / n)  # binomial standard deviation of the drop fraction
    assert abs(float(np.mean(m == 0)) - rate) < band


def test_rate_zero_means_no_mask():
    assert np.all(np.asarray(fast.dropout_mask(jax.random.key(0), 0.0, (4, 7), jnp.float32)) == 1.0)
    cfg = ModelConfig(vocab_size=10, embed_dim=3, window=3, hidden_dim=5, fast=True)
    assert model.dropout_masks(jax.random.key(0), cfg, 4, jnp.float32) is None
    only_h = ModelConfig(vocab_size=10, embed_dim=3, window=3, hidden_dim=5, dropout=0.5, input_dropout=0.0, fast=True)
    m_x, m_h = model.dropout_masks(jax.random.key(0), only_h, 4, jnp.float32)
    assert np.all(np.asarray(m_x) == 1.0) and np.any(np.asarray(m_h) == 0.0)


def test_fast_masks_are_fast_dropout_mask_of_the_split_key():
    cfg = ModelConfig(vocab_size=10, embed_dim=3, window=3, hidden_dim=5, dropout=0.3, input_dropout=0.2, fast=True)
    kx, kh = jax.random.split(jax.random.key(4))
    m_x, m_h = model.dropout_masks(jax.random.key(4), cfg, 6, jnp.float32)
    np.testing.assert_array_equal(m_x, fast.dropout_mask(kx, 0.2, (6, cfg.input_dim), jnp.float32))
    np.testing.assert_array_equal(m_h, fast.dropout_mask(kh, 0.3, (6, cfg.hidden_dim), jnp.float32))


def make_batch(cfg, rng, B):
    batch = {"windows": rng.integers(0, cfg.vocab_size, (B, cfg.window), dtype=np.int32)}
    if cfg.head == "softmax":
        batch["labels"] = rng.integers(0, cfg.num_classes, B, dtype=np.int32)
    else:
        batch["corrupt"] = rng.integers(0, cfg.vocab_size, (B, cfg.window), dtype=np.int32)
    if cfg.uses_features:
        batch["features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.feature_width), dtype=np.int32)
        if cfg.head == "score":
            batch["corrupt_features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.feature_width), dtype=np.int32)
    batch["weights"] = rng.uniform(0.5, 2.0, B)
    return batch


CONFIGS = {
    "softmax-features": ModelConfig(
        30, embed_dim=4, hidden_dim=9, l2=0.1, feature_vocab_size=6, feature_dim=2, features_per_word=2
    ),
    "score-prelu": ModelConfig(30, embed_dim=3, window=3, hidden_dim=7, head="score", activation="prelu"),
}


@pytest.mark.parametrize("B", [1, 7])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_changes_nothing_without_dropout(x64, name, B):
    plain_cfg = CONFIGS[name]
    fast_cfg = dataclasses.replace(plain_cfg, fast=True)
    params = init_params(jax.random.key(0), plain_cfg, dtype=jnp.float64)
    batch = make_batch(plain_cfg, np.random.default_rng(B), B)
    outputs = []
    for cfg in (plain_cfg, fast_cfg):
        logits = model.forward(params, batch["windows"], cfg, batch.get("features"))
        J, grads = manual_value_and_grad(params, batch, cfg)
        outputs.append({"forward": logits, "loss": loss(params, batch, cfg), "manual": (J, grads)})
    for a, b in zip(jax.tree.leaves(outputs[0]), jax.tree.leaves(outputs[1])):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_manual_equals_jax_grad_with_fast_dropout(x64, name):
    cfg = dataclasses.replace(CONFIGS[name], dropout=0.4, input_dropout=0.2, fast=True)
    params = init_params(jax.random.key(1), cfg, dtype=jnp.float64)
    params = {k: v + 0.1 for k, v in params.items()}  # nonzero biases: no zero hides a wrong rule
    batch = make_batch(cfg, np.random.default_rng(3), 9)
    key = jax.random.key(2)
    J_m, g_m = manual_value_and_grad(params, batch, cfg, key=key)
    J_a, g_a = jax.value_and_grad(loss)(params, batch, cfg, key=key)
    np.testing.assert_allclose(J_m, J_a, rtol=RTOL)
    assert_trees_close(g_m, g_a, rtol=RTOL)
    assert float(J_m) != float(loss(params, batch, cfg))  # the dropout key did change the loss
