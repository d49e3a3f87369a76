"""jaxbackprop.probes on hand-built layers whose answers are known, and against jax.grad.

Tolerances: the symmetry, dead-unit and saturation probes reduce small integers or exact float32
values (z of -10, -0.5, 0, 1, 2) with comparisons and counts, so they are checked for equality.
The gradient probes are compared in float64 with an independent autodiff reference; the two
differ only by the order of the sums (at most B n d H ~ 1e3 products here), eps64 * 1e3 ~ 2e-13
relative, so rtol 1e-12 leaves a 5x margin and still fails on any real mistake.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbackprop import model, probes
from jaxbackprop import nonlinearities as nl

RTOL64 = 1e-12


def test_identical_rows_are_symmetric_and_count_once():
    rows = np.tile([[0.5, -2.0, 3.0]], (4, 1))
    assert probes.unit_symmetry(rows) == 0.0 and probes.max_pairwise_difference(rows) == 0.0
    assert probes.count_distinct(rows) == 1


def test_max_pairwise_difference_is_the_largest_coordinate_gap():
    rows = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]])  # column spreads 2 and 2
    assert probes.max_pairwise_difference(rows) == 2.0
    assert probes.unit_symmetry(rows) == 1.0  # relative to the largest |entry|, 2
    assert probes.unit_symmetry(np.zeros((3, 2))) == 0.0


def test_count_distinct_uses_the_relative_tolerance():
    tol = probes.SAME_UNIT_RTOL  # relative to max |entry| = 1
    assert probes.count_distinct(np.array([[1.0, 0.0], [1.0, tol / 10], [0.0, 1.0]])) == 2
    assert probes.count_distinct(np.array([[1.0, 0.0], [1.0, tol * 10], [0.0, 1.0]])) == 3
    assert probes.count_distinct(np.eye(5)) == 5


def test_hidden_units_concatenate_each_units_parameters():
    W, b, U = np.arange(6.0).reshape(2, 3), np.array([7.0, 8.0]), np.arange(10.0, 18.0).reshape(4, 2)
    units = probes.hidden_units({"W": W, "b": b, "U": U})
    assert units.shape == (2, 3 + 1 + 4)
    np.testing.assert_array_equal(units[1], [3.0, 4.0, 5.0, 8.0, 11.0, 13.0, 15.0, 17.0])


def test_rank_and_gap():
    assert probes.rank_and_gap(np.zeros((3, 4))) == (0, 0.0)
    rank, gap = probes.rank_and_gap(np.outer([1.0, -2.0, 0.5], [3.0, 1.0, 2.0, -1.0]))
    assert rank == 1 and gap < 1e-15  # sigma_2 of a rank-1 matrix: float64 round-off
    assert probes.rank_and_gap(np.diag([4.0, 2.0, 1.0]))[0] == 3 and probes.rank_and_gap(np.diag([4.0, 2.0]))[1] == 0.5


def _layer(activation, b, W=((1.0,), (1.0,), (-1.0,))):
    """A window-1 model over 4 words with 1-d vectors x = -1, 0, 1, 2 and hand-set hidden units."""
    cfg = model.ModelConfig(
        vocab_size=4, embed_dim=1, window=1, hidden_dim=len(b), num_classes=2, activation=activation
    )
    H = len(b)
    params = {
        "E": jnp.array([[-1.0], [0.0], [1.0], [2.0]]),
        "W": jnp.array(W),
        "b": jnp.array(b),
        "U": jnp.zeros((2, H)),
        "c": jnp.zeros(2),
    }
    if activation == "prelu":
        params["alpha"] = jnp.array(nl.PRELU_ALPHA_INIT)
    return cfg, params


def test_dead_units_of_a_hand_built_relu_layer():
    # unit 0: z = x - 10 < 0 on every word (dead); unit 1: z = x, on for x = 1, 2; unit 2: z = -x - 0.5, on for x = -1
    cfg, params = _layer("relu", [-10.0, 0.0, -0.5])
    every_word = jnp.arange(4)[:, None]
    fprime = probes.local_gradients(params, every_word, cfg)
    np.testing.assert_array_equal(fprime, [[0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 1, 0]])
    assert probes.dead_fraction(fprime) == 1 / 3
    assert probes.off_fraction(fprime) == 9 / 12
    # on the word x = 0 alone every unit is off (relu'(0) = 0): all three are dead there
    assert probes.dead_fraction(probes.local_gradients(params, jnp.array([[1]]), cfg)) == 1.0
    # a leaky unit is never dead: f' is its slope, not 0, for z <= 0
    cfg, params = _layer("leaky_relu", [-10.0, 0.0, -0.5])
    assert probes.dead_fraction(probes.local_gradients(params, every_word, cfg)) == 0.0


def test_saturated_units_of_a_hand_built_sigmoid_layer():
    # unit 0: z = x + 8 in [7, 10], sigmoid'(z) in [4.5e-5, 9.1e-4]: flat, but not 0 (at z = 20 float32
    # rounds sigmoid to 1 and f' to exactly 0: dead); unit 1: z = x / 10, |z| <= 0.2, sigmoid' ~ 0.25
    cfg, params = _layer("sigmoid", [8.0, 0.0], W=((1.0,), (0.1,)))
    fprime = probes.local_gradients(params, jnp.arange(4)[:, None], cfg)
    assert probes.saturated_fraction(fprime) == 0.5 and probes.dead_fraction(fprime) == 0.0
    assert float(jnp.max(fprime[:, 1])) <= 0.25 and float(jnp.min(fprime[:, 1])) > 0.24


def test_a_negative_prelu_slope_is_not_flat():
    # alpha = -0.5: f'(z) = -0.5 for z < 0, a steep slope that passes gradient back (with the sign flipped)
    cfg, params = _layer("prelu", [-10.0, 0.0, -0.5])
    params["alpha"] = jnp.array(-0.5)
    fprime = probes.local_gradients(params, jnp.arange(4)[:, None], cfg)
    np.testing.assert_array_equal(fprime, [[-0.5, -0.5, 1], [-0.5, -0.5, -0.5], [-0.5, 1, -0.5], [-0.5, 1, -0.5]])
    assert probes.saturated_fraction(fprime) == 0.0 and probes.flat_fraction(fprime) == 0.0
    params["alpha"] = jnp.array(-1e-4)  # a slope this close to 0 is flat, whatever its sign
    fprime = probes.local_gradients(params, jnp.arange(4)[:, None], cfg)
    assert probes.saturated_fraction(fprime) == 1 / 3 and probes.flat_fraction(fprime) == 9 / 12


def test_local_gradients_equal_jax_grad_of_the_activation(x64):
    rng = np.random.default_rng(0)
    cfg = model.ModelConfig(vocab_size=20, embed_dim=4, window=3, hidden_dim=6, num_classes=3, activation="tanh")
    params = {k: jnp.asarray(v, jnp.float64) for k, v in model.init_params(jax.random.key(0), cfg).items()}
    windows = jnp.asarray(rng.integers(0, 20, (8, 3)), jnp.int32)
    z = probes.pre_activations(params, windows, cfg)
    expected = jax.vmap(jax.vmap(jax.grad(lambda v: nl.apply("tanh", v))))(z)
    np.testing.assert_allclose(probes.local_gradients(params, windows, cfg), expected, rtol=RTOL64)


def test_gradient_norms_are_frobenius_norms():
    assert probes.gradient_norms({"W": np.array([[3.0, 4.0]]), "b": np.zeros(3), "U": np.full((2, 2), 0.5)}) == {
        "W": 5.0,
        "b": 0.0,
        "U": 1.0,
    }


@pytest.fixture
def small_model(x64):
    rng = np.random.default_rng(1)
    cfg = model.ModelConfig(vocab_size=30, embed_dim=4, window=3, hidden_dim=5, num_classes=3, activation="sigmoid")
    params = {k: jnp.asarray(v, jnp.float64) for k, v in model.init_params(jax.random.key(1), cfg).items()}
    batch = {
        "windows": jnp.asarray(rng.integers(0, 30, (6, 3)), jnp.int32),
        "labels": jnp.asarray(rng.integers(0, 3, 6)),
    }
    return cfg, params, batch


def test_first_layer_probe_against_autodiff(small_model):
    cfg, params, batch = small_model
    out = probes.first_layer_probe(params, batch, batch["windows"], cfg)
    grads = jax.grad(model.loss)(params, batch, cfg)
    assert out["grad_W"] == pytest.approx(float(jnp.linalg.norm(grads["W"])), rel=RTOL64)
    assert out["grad_U"] == pytest.approx(float(jnp.linalg.norm(grads["U"])), rel=RTOL64)

    def window_loss(x, label):  # one window's loss as a function of its input vector x (n d,)
        logits = params["U"] @ nl.apply("sigmoid", params["W"] @ x + params["b"]) + params["c"]
        return -jax.nn.log_softmax(logits)[label]

    x = model.window_vectors(params, batch["windows"], cfg)
    dx = jax.vmap(jax.grad(window_loss))(x, batch["labels"])
    assert out["grad_x_per_window"] == pytest.approx(float(jnp.mean(jnp.linalg.norm(dx, axis=1))), rel=RTOL64)
    z = probes.pre_activations(params, batch["windows"], cfg)
    s = nl.apply("sigmoid", z)
    assert out["mean_fprime"] == pytest.approx(float(jnp.mean(s * (1 - s))), rel=RTOL64)
    assert out["dead_fraction"] == 0.0 and out["saturated_fraction"] == 0.0  # small Xavier weights: f' ~ 1/4


def test_symmetry_probe_zero_start_is_one_unit_and_xavier_is_h(small_model):
    cfg, _, batch = small_model
    zeros = {k: jnp.asarray(v, jnp.float64) for k, v in model.init_params(jax.random.key(2), cfg, init="zeros").items()}
    out = probes.symmetry_probe(zeros, batch, batch["windows"], cfg)
    assert out["distinct_units"] == 1 and out["max_unit_difference"] == 0.0 and out["max_unit_difference_rel"] == 0.0
    assert (out["W_rank"], out["W_sv2_over_sv1"], out["W_norm"]) == (0, 0.0, 0.0)
    assert out["h_std_across_units"] == 0.0 and out["h_mean_abs"] == 0.5  # sigmoid(0) for every unit
    assert out["distinct_grad_W_rows"] == 1 and out["grad_W_row_spread"] == 0.0  # U = 0: dJ/dW = 0
    xavier = {k: jnp.asarray(v, jnp.float64) for k, v in model.init_params(jax.random.key(2), cfg).items()}
    out = probes.symmetry_probe(xavier, batch, batch["windows"], cfg)
    assert out["distinct_units"] == cfg.hidden_dim == out["W_rank"] == out["distinct_grad_W_rows"]
    assert out["max_unit_difference_rel"] > 0.1 and out["h_std_across_units"] > 0


def test_first_windows_takes_features_only_when_the_model_uses_them():
    class Split:
        windows, labels, features = np.arange(12).reshape(4, 3), np.arange(4), np.ones((4, 6), int)

    plain = model.ModelConfig(vocab_size=12, embed_dim=2, window=3, hidden_dim=2, num_classes=4)
    batch = probes.first_windows(Split, 2, plain)
    assert set(batch) == {"windows", "labels"} and batch["windows"].shape == (2, 3)
    featured = model.ModelConfig(
        vocab_size=12,
        embed_dim=2,
        window=3,
        hidden_dim=2,
        num_classes=4,
        feature_vocab_size=5,
        feature_dim=2,
        features_per_word=2,
    )
    assert probes.first_windows(Split, 3, featured)["features"].shape == (3, 6)
