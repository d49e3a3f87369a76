"""Hand-derived gradients against jax.grad (float64, relative 1e-10) and their invariants."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbackprop import ModelConfig, backprop, check_matrix, gradcheck, init_params, loss, manual_value_and_grad, model
from jaxbackprop.nonlinearities import ACTIVATIONS
from tests.helpers import EPS64, assert_trees_close

RTOL = gradcheck.MANUAL_VS_AUTODIFF_RTOL


def make_batch(cfg, rng, B, *, repeat=False, pad=False, weights=False):
    """A random batch for cfg; optionally windows that repeat a word and use padding ids 1, 2."""
    n = cfg.window
    windows = rng.integers(0, cfg.vocab_size, (B, n), dtype=np.int32)
    if repeat and n > 1:
        windows[:, -1] = windows[:, 0]
    if pad and cfg.vocab_size > 2:
        windows[0, : n // 2] = 1
        windows[-1, n // 2 + 1 :] = 2
    batch = {"windows": windows}
    if cfg.head == "softmax":
        batch["labels"] = rng.integers(0, cfg.num_classes, B, dtype=np.int32)
    else:
        batch["corrupt"] = rng.integers(0, cfg.vocab_size, (B, n), dtype=np.int32)
    if cfg.uses_features:
        batch["features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.feature_width), dtype=np.int32)
        if cfg.head == "score":
            batch["corrupt_features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.feature_width), dtype=np.int32)
    if weights:
        batch["weights"] = rng.uniform(0.5, 2.0, B)
    return batch


@functools.partial(jax.jit, static_argnames="cfg", compiler_options=gradcheck.FAST_COMPILE)
def both_grads(params, batch, cfg, key=None):
    """Both gradients in one program: each hypothesis example has new shapes, so compile time
    dominates and XLA's optimisation passes are switched off."""
    return manual_value_and_grad(params, batch, cfg, key=key), jax.value_and_grad(loss)(params, batch, cfg, key=key)


@settings(max_examples=20, deadline=None)
@given(
    V=st.integers(3, 40),
    d=st.integers(1, 6),
    window=st.sampled_from([1, 3, 5, 7]),
    H=st.integers(1, 8),
    C=st.integers(2, 6),
    B=st.integers(1, 6),
    activation=st.sampled_from(ACTIVATIONS),
    head=st.sampled_from(["softmax", "score"]),
    features=st.integers(0, 3),  # feature ids per word (casing category, suffix, ...); 0: none
    l2=st.sampled_from([0.0, 0.3]),
    dropout=st.booleans(),
    repeat=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_manual_equals_jax_grad_over_shapes(
    V, d, window, H, C, B, activation, head, features, l2, dropout, repeat, seed
):
    cfg = ModelConfig(
        vocab_size=V,
        embed_dim=d,
        window=window,
        hidden_dim=H,
        num_classes=C,
        activation=activation,
        head=head,
        l2=l2,
        dropout=0.25 if dropout else 0.0,
        feature_vocab_size=5 if features else 0,
        feature_dim=2 if features else 0,
        features_per_word=max(features, 1),
    )
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        params = check_matrix.check_params(seed, cfg)
        batch = make_batch(cfg, rng, B, repeat=repeat, pad=repeat, weights=seed % 2 == 0)
        key = jax.random.key(seed) if dropout else None
        (J_m, g_m), (J_a, g_a) = both_grads(params, batch, cfg, key)
        assert abs(float(J_m) - float(J_a)) <= 1e-12 * max(1.0, abs(float(J_a)))
        assert_trees_close(g_m, g_a, rtol=RTOL)


@pytest.mark.parametrize("head", ["softmax", "score"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_and_head_jitted(x64, activation, head):
    cfg = ModelConfig(vocab_size=25, embed_dim=4, window=5, hidden_dim=6, activation=activation, head=head, l2=0.05)
    params = check_matrix.check_params(1, cfg)
    batch = make_batch(cfg, np.random.default_rng(0), 7, repeat=True, pad=True)
    J_m, g_m = jax.jit(manual_value_and_grad, static_argnums=2)(params, batch, cfg)
    J_a, g_a = jax.jit(jax.value_and_grad(loss), static_argnums=2)(params, batch, cfg)
    np.testing.assert_allclose(J_m, J_a, rtol=1e-13)
    assert_trees_close(g_m, g_a, rtol=RTOL)


@pytest.mark.parametrize("head", ["softmax", "score"])
def test_untouched_embedding_rows_are_exactly_zero(x64, head):
    cfg = ModelConfig(vocab_size=80, embed_dim=3, window=3, hidden_dim=5, head=head, activation="tanh")
    params = check_matrix.check_params(0, cfg)
    batch = make_batch(cfg, np.random.default_rng(3), 4)
    _, g = manual_value_and_grad(params, batch, cfg)
    used = np.unique(np.concatenate([batch["windows"].ravel(), batch.get("corrupt", np.zeros(0, int)).ravel()]))
    unused = np.setdiff1d(np.arange(cfg.vocab_size), used)
    assert len(unused) > 50
    assert np.all(np.asarray(g["E"])[unused] == 0.0)  # exactly, not approximately
    assert np.all(np.any(np.asarray(g["E"])[used] != 0.0, axis=1))


def test_repeated_word_gets_both_updates(x64):
    """A word twice in a window gets the sum of both slices' gradients: split it into two ids
    holding the same vector and the loss is unchanged while the two rows' gradients add up."""
    cfg = ModelConfig(vocab_size=10, embed_dim=3, window=3, hidden_dim=4, activation="sigmoid")
    params = check_matrix.check_params(2, cfg)
    params["E"][9] = params["E"][4]  # id 9 is a copy of id 4
    together = {"windows": np.array([[4, 7, 4]], np.int32), "labels": np.array([1], np.int32)}
    apart = {"windows": np.array([[4, 7, 9]], np.int32), "labels": np.array([1], np.int32)}
    J1, g1 = manual_value_and_grad(params, together, cfg)
    J2, g2 = manual_value_and_grad(params, apart, cfg)
    np.testing.assert_allclose(J1, J2, rtol=8 * EPS64)  # the same numbers through the same code
    np.testing.assert_allclose(g1["E"][4], g2["E"][4] + g2["E"][9], rtol=1e-13)
    assert np.all(np.asarray(g2["E"][4]) != np.asarray(g1["E"][4]))


def test_grads_have_params_structure_shapes_dtypes_and_are_finite():
    cfg = ModelConfig(
        vocab_size=30, embed_dim=5, window=5, hidden_dim=7, activation="prelu", feature_vocab_size=4, feature_dim=2
    )
    params = init_params(jax.random.key(0), cfg)
    batch = make_batch(cfg, np.random.default_rng(0), 3)
    J, g = jax.jit(manual_value_and_grad, static_argnums=2)(params, batch, cfg)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    for k in params:
        assert g[k].shape == params[k].shape and g[k].dtype == params[k].dtype == jnp.float32, k
        assert np.all(np.isfinite(g[k])), k
    assert np.isfinite(J) and J.shape == ()


def test_jit_and_no_jit_agree_and_second_call_does_not_recompile(x64):
    cfg = ModelConfig(vocab_size=20, embed_dim=4, window=3, hidden_dim=6, activation="hardtanh", head="score", l2=0.1)
    params = check_matrix.check_params(5, cfg)
    rng = np.random.default_rng(0)
    step = jax.jit(manual_value_and_grad, static_argnums=2)
    J_eager, g_eager = manual_value_and_grad(params, make_batch(cfg, rng, 4), cfg)
    batch1, batch2 = make_batch(cfg, rng, 4), make_batch(cfg, rng, 4)
    step(params, batch1, cfg)
    size = step._cache_size()
    J2, g2 = step(params, batch2, cfg)
    assert step._cache_size() == size, "a second call with equal shapes recompiled"
    J_eager2, g_eager2 = manual_value_and_grad(params, batch2, cfg)
    np.testing.assert_allclose(J2, J_eager2, rtol=1e-13)
    assert_trees_close(g2, g_eager2, rtol=1e-12)


def test_weighted_mean_ignores_zero_weight_rows(x64):
    cfg = ModelConfig(vocab_size=20, embed_dim=3, window=3, hidden_dim=4, activation="relu")
    params = check_matrix.check_params(0, cfg)
    batch = make_batch(cfg, np.random.default_rng(1), 5)
    padded = {k: np.concatenate([v, v[:2]]) for k, v in batch.items()}
    padded["weights"] = np.array([1, 1, 1, 1, 1, 0, 0], np.float64)
    J, g = manual_value_and_grad(params, batch, cfg)
    Jp, gp = manual_value_and_grad(params, padded, cfg)
    np.testing.assert_allclose(J, Jp, rtol=1e-14)
    assert_trees_close(gp, g, rtol=1e-13)


def test_manual_path_calls_no_autodiff(monkeypatch, x64):
    def forbidden(*args, **kwargs):
        raise AssertionError("autodiff used on the manual path")

    for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize", "custom_vjp", "custom_jvp"):
        monkeypatch.setattr(jax, name, forbidden)
    cfg = ModelConfig(vocab_size=20, embed_dim=3, window=3, hidden_dim=4, activation="prelu", head="score", dropout=0.2)
    params = check_matrix.check_params(0, cfg)
    J, g = manual_value_and_grad(params, make_batch(cfg, np.random.default_rng(0), 3), cfg, key=jax.random.key(0))
    assert np.isfinite(J) and set(g) == set(params)


def test_scatter_rows_adds_duplicates():
    out = backprop.scatter_rows(jnp.array([1, 1, 3]), jnp.array([[1.0, 2.0], [10.0, 20.0], [5.0, 5.0]]), 4)
    np.testing.assert_array_equal(out, [[0, 0], [11, 22], [0, 0], [5, 5]])


def test_lecture_score_head_delta_is_u_times_fprime(x64):
    """For s = u.f(Wx + b) on one window, ds/db = u o f'(z), ds/dW = delta x^T, ds/dx = W^T delta.

    With a corrupt window scoring far lower the hinge is active, J = 1 - s + s_c, so dJ/db for
    the true window alone is -u o f'(z) -- checked against the formula written out here."""
    cfg = ModelConfig(vocab_size=6, embed_dim=2, window=1, hidden_dim=3, activation="sigmoid", head="score")
    params = {k: np.asarray(v) for k, v in check_matrix.check_params(0, cfg).items()}
    batch = {"windows": np.array([[1]], np.int32), "corrupt": np.array([[1]], np.int32)}
    # same window as its own corruption: s = s_c, so J = 1 and the two windows' gradients cancel
    # (to float64 round-off of s and of delta x^T: a few eps64 of their size)
    J_same, g_same = manual_value_and_grad(params, batch, cfg)
    batch["corrupt"] = np.array([[2]], np.int32)
    _, g = manual_value_and_grad(params, batch, cfg)
    x1, x2 = params["E"][1], params["E"][2]
    z1, z2 = params["W"] @ x1 + params["b"], params["W"] @ x2 + params["b"]
    s1, s2 = 1 / (1 + np.exp(-z1)), 1 / (1 + np.exp(-z2))
    delta1, delta2 = params["u"] * s1 * (1 - s1), params["u"] * s2 * (1 - s2)
    assert abs(float(J_same) - 1.0) <= 4 * EPS64 * (1.0 + np.sum(np.abs(params["u"] * s1)))
    assert np.max(np.abs(g_same["W"])) <= 4 * EPS64 * np.max(np.abs(np.outer(delta1, x1)))
    # the hand-written formulas, relative to each tensor's largest entry (the project's float64 RTOL)
    assert_trees_close(
        {"b": g["b"], "W": g["W"], "E1": g["E"][1], "u": g["u"]},
        {
            "b": -delta1 + delta2,
            "W": -np.outer(delta1, x1) + np.outer(delta2, x2),
            "E1": -params["W"].T @ delta1,
            "u": -s1 + s2,
        },
        rtol=RTOL,
    )


def test_softmax_gradient_rows_sum_to_zero(x64):
    """dJ/dlogits = y_hat - y: each row sums to 1 - 1 = 0, so dJ/dc sums to zero too."""
    cfg = ModelConfig(vocab_size=15, embed_dim=3, window=3, hidden_dim=5, num_classes=4)
    params = check_matrix.check_params(0, cfg)
    batch = make_batch(cfg, np.random.default_rng(2), 6)
    h = model.hidden(params, batch["windows"], cfg)
    _, res = backprop.softmax_head_fwd(params, h, batch["labels"], None)
    probs, labels, w = res[1], res[2], res[3]
    dlogits = w[:, None] * (probs - np.eye(4)[labels])
    # float64 round-off: C probabilities (each within a few eps of its value) summed, minus 1, times w
    C, B, w_max = cfg.num_classes, len(batch["labels"]), float(np.max(np.abs(w)))
    np.testing.assert_allclose(np.sum(dlogits, axis=1), 0.0, atol=4 * EPS64 * C * w_max)
    _, g = manual_value_and_grad(params, batch, cfg)
    # dJ/dc sums the B rows: B C terms of size <= w, each row summing to zero
    assert abs(float(np.sum(g["c"]))) <= 4 * EPS64 * B * C * w_max and np.max(np.abs(g["c"])) > 1e-3


def test_separate_input_dropout_rate(x64):
    cfg = ModelConfig(
        vocab_size=20, embed_dim=4, window=3, hidden_dim=400, activation="relu", dropout=0.5, input_dropout=0.1
    )
    params = check_matrix.check_params(0, cfg)
    mx, mh = model.dropout_masks(jax.random.key(0), cfg, 50, jnp.float64)
    assert abs(float(np.mean(mx == 0)) - 0.1) < 0.02 and abs(float(np.mean(mh == 0)) - 0.5) < 0.02
    batch = make_batch(cfg, np.random.default_rng(0), 5)
    (J_m, g_m), (J_a, g_a) = both_grads(params, batch, cfg, jax.random.key(1))
    assert_trees_close(g_m, g_a, rtol=RTOL)
    with pytest.raises(ValueError, match="input_dropout must be in"):
        ModelConfig(vocab_size=5, input_dropout=1.0)
