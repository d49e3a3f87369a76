"""The Flax NNX module is the same model as the pure functions: same outputs, loss and
gradients (float64, relative 1e-10) for every activation x head x features x dropout, the crf head
on padded sentences too, and the conversions between the two parameter layouts are exact."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxbackprop import ModelConfig, forward, gradcheck, loss, manual_value_and_grad, model
from jaxbackprop import nonlinearities as nl
from jaxbackprop.flax_model import WindowClassifier, flax_loss, flax_value_and_grad, from_params, to_params
from tests.helpers import assert_trees_close

RTOL = gradcheck.MANUAL_VS_AUTODIFF_RTOL  # 1e-10, relative to each tensor's largest entry
B, USED_WORDS = 8, 12  # windows use word ids < 12 only, so rows 12..19 of E must get zero gradient

# activation x head x features x dropout: every combination is a row
CASES = list(itertools.product(nl.ACTIVATIONS, ("softmax", "score"), (False, True), (False, True)))
CASE_IDS = [f"{a}-{h}-{'case' if c else 'nocase'}-{'drop' if d else 'nodrop'}" for a, h, c, d in CASES]


def make_cfg(activation, head, features):
    return ModelConfig(
        vocab_size=20,
        embed_dim=4,
        window=3,
        hidden_dim=7,
        num_classes=5,
        activation=activation,
        head=head,
        l2=0.1,
        dropout=0.3,
        feature_vocab_size=3 if features else 0,
        feature_dim=2 if features else 0,
        features_per_word=2 if features else 1,
    )


def make_params(cfg):
    """float64 params of order 1 (not init_params' small ones): pre-activations fall on both
    sides of every kink and hinge margins come out both positive and negative. Drawn with
    numpy: eager jax.random would compile a sampler for every new shape."""
    rng = np.random.default_rng(0)
    std = {"W": 0.4, "u": 2.0}  # z = W x + b of order 1; scores s = u.h spread over about +-2
    return {k: jnp.asarray(rng.normal(0.0, std.get(k, 0.5), shape)) for k, shape in model.param_shapes(cfg).items()}


def make_batch(cfg, *, weights):
    rng = np.random.default_rng(1)
    ids = lambda upper, width=cfg.window: jnp.asarray(rng.integers(0, upper, (B, width), dtype=np.int32))  # noqa: E731
    windows = ids(USED_WORDS).at[0].set(jnp.array([3, 3, 5], jnp.int32))  # a word repeated within a window
    batch = {"windows": windows}
    if cfg.head == "softmax":
        batch["labels"] = jnp.asarray(rng.integers(0, cfg.num_classes, (B,), dtype=np.int32))
    else:
        batch["corrupt"] = ids(USED_WORDS)
    if cfg.uses_features:
        batch["features"] = ids(cfg.feature_vocab_size, cfg.feature_width)
        if cfg.head == "score":
            batch["corrupt_features"] = ids(cfg.feature_vocab_size, cfg.feature_width)
    if weights:
        batch["weights"] = jnp.asarray(rng.uniform(0.5, 2.0, (B,))).at[1].set(0.0)  # one padding row
    return batch


@pytest.mark.parametrize("activation,head,features,dropout", CASES, ids=CASE_IDS)
def test_flax_module_equals_pure_model(x64, activation, head, features, dropout):
    cfg = make_cfg(activation, head, features)
    params = make_params(cfg)
    batch = make_batch(cfg, weights=features)  # weighted mean in half the rows, plain mean in the other
    key = jax.random.key(7) if dropout else None
    module = from_params(params, cfg)

    # forward: logits (B, C) or scores (B,), with the same dropout masks for the same key
    out = module(batch["windows"], batch.get("features"), key=key)
    expected = forward(params, batch["windows"], cfg, batch.get("features"), key=key)
    assert out.shape == ((B, cfg.num_classes) if head == "softmax" else (B,))
    assert_trees_close(out, expected, rtol=RTOL)
    if dropout:  # the key really switches dropout on
        assert not np.allclose(out, forward(params, batch["windows"], cfg, batch.get("features")))

    # loss and gradients against autodiff of the pure loss and the hand-derived backprop
    J_ref, g_ref = jax.value_and_grad(loss)(params, batch, cfg, key=key)
    J_man, g_man = manual_value_and_grad(params, batch, cfg, key=key)
    J, grads = flax_value_and_grad(params, batch, cfg, key=key)
    assert float(J) > 0
    assert_trees_close(flax_loss(module, batch, cfg, key=key), J_ref, rtol=RTOL)
    assert_trees_close(J, J_ref, rtol=RTOL)
    assert_trees_close(J, J_man, rtol=RTOL)
    assert_trees_close(grads, g_ref, rtol=RTOL)
    assert_trees_close(grads, g_man, rtol=RTOL)

    # invariants: every parameter gets a finite, non-trivial gradient; untouched rows exactly 0
    assert {k: (v.shape, v.dtype) for k, v in grads.items()} == {k: (v.shape, v.dtype) for k, v in params.items()}
    for k, g in grads.items():
        assert np.all(np.isfinite(g)) and np.any(g != 0), f"grads[{k!r}] is not finite or all zero"
    assert np.all(np.asarray(grads["E"][USED_WORDS:]) == 0.0)


# crf head: features x padding (sentences of lengths 5, 3, 0, 1 of L = 5) x dropout; the padded batches
# also carry per-sentence weights
CRF_CASES = list(itertools.product((False, True), (False, True), (False, True)))
CRF_IDS = [f"{'case' if c else 'nocase'}-{'pad' if p else 'full'}-{'drop' if d else 'nodrop'}" for c, p, d in CRF_CASES]
S, L = 4, 5


def make_sentence_batch(cfg, *, padding):
    """S padded sentences of L tokens; padding tokens hold word ids >= USED_WORDS, which only they use."""
    rng = np.random.default_rng(2)
    lengths = np.array([5, 3, 0, 1] if padding else [L] * S)
    mask = np.arange(L)[None, :] < lengths[:, None]
    windows = rng.integers(0, USED_WORDS, (S, L, cfg.window), dtype=np.int32)
    windows[~mask] = rng.integers(USED_WORDS, cfg.vocab_size, (int((~mask).sum()), cfg.window))
    windows[0, 0] = [3, 3, 5]  # a word repeated within a window
    batch = {
        "windows": jnp.asarray(windows),
        "labels": jnp.asarray(rng.integers(0, cfg.num_classes, (S, L), dtype=np.int32)),
        "mask": jnp.asarray(mask),
    }
    if cfg.uses_features:
        batch["features"] = jnp.asarray(rng.integers(0, cfg.feature_vocab_size, (S, L, cfg.feature_width), np.int32))
    if padding:
        batch["weights"] = jnp.asarray(rng.uniform(0.5, 2.0, (S,)))
    return batch


@pytest.mark.parametrize("features,padding,dropout", CRF_CASES, ids=CRF_IDS)
def test_flax_crf_head_equals_pure_model(x64, features, padding, dropout):
    cfg = make_cfg("tanh", "crf", features)
    params, batch = make_params(cfg), make_sentence_batch(cfg, padding=padding)
    key = jax.random.key(5) if dropout else None
    module = from_params(params, cfg)
    emissions = module.sentence_emissions(batch["windows"], batch.get("features"), key=key)
    assert emissions.shape == (S, L, cfg.num_classes)
    expected = model.sentence_emissions(params, batch["windows"], cfg, batch.get("features"), key=key)
    assert_trees_close(emissions, expected, rtol=RTOL)

    J_ref, g_ref = jax.value_and_grad(loss)(params, batch, cfg, key=key)
    J_man, g_man = manual_value_and_grad(params, batch, cfg, key=key)
    J, grads = flax_value_and_grad(params, batch, cfg, key=key)
    assert float(J) > 0
    assert_trees_close(flax_loss(module, batch, cfg, key=key), J_ref, rtol=RTOL)
    assert_trees_close((J, grads), (J_ref, g_ref), rtol=RTOL)
    assert_trees_close((J, grads), (J_man, g_man), rtol=RTOL)
    for k, g in grads.items():
        assert g.dtype == params[k].dtype and np.all(np.isfinite(g)) and np.any(g != 0), k
    # the rows only padding tokens name get exactly zero gradient
    assert np.all(np.asarray(grads["E"][USED_WORDS:]) == 0.0) and np.any(np.asarray(grads["E"][:USED_WORDS]) != 0)


def test_flax_crf_module_starts_as_init_params_and_round_trips(x64):
    cfg = make_cfg("relu", "crf", True)
    fresh = to_params(WindowClassifier(cfg, rngs=nnx.Rngs(0)))
    assert {k: v.shape for k, v in fresh.items()} == model.param_shapes(cfg)
    assert not any(np.asarray(fresh[k]).any() for k in ("T", "start", "end"))  # zero transitions, as init_params
    params = make_params(cfg)
    module = from_params(params, cfg)
    assert np.array_equal(module.T[...], params["T"]) and np.array_equal(module.out.kernel[...], params["U"].T)
    back = to_params(module)
    assert set(back) == set(params) and all(np.array_equal(back[k], params[k]) for k in params)
    with pytest.raises(ValueError, match="batch of sentences"):
        flax_loss(module, make_batch(make_cfg("relu", "softmax", True), weights=False), cfg)


def test_score_cases_exercise_both_sides_of_the_hinge(x64):
    cfg = make_cfg("relu", "score", False)
    params, batch = make_params(cfg), make_batch(cfg, weights=False)
    margin = model.MARGIN - forward(params, batch["windows"], cfg) + forward(params, batch["corrupt"], cfg)
    assert np.any(margin > 0) and np.any(margin < 0), margin


@pytest.mark.parametrize("activation,head,features", sorted({c[:3] for c in CASES}))  # dropout: no params
def test_params_round_trip_exactly(x64, activation, head, features):
    cfg = make_cfg(activation, head, features)
    params = make_params(cfg)
    module = from_params(params, cfg)
    back = to_params(module)
    assert set(back) == set(params)
    for k in params:
        assert back[k].dtype == params[k].dtype and np.array_equal(back[k], params[k]), k
    # the documented layout: nnx.Linear kernels are the lecture's matrices transposed
    assert np.array_equal(module.hidden.kernel[...], params["W"].T)
    assert np.array_equal(module.E.embedding[...], params["E"])


@pytest.mark.parametrize("head", ["softmax", "score"])
def test_jit_agrees_with_eager_and_does_not_retrace(x64, head):
    cfg = make_cfg("prelu", head, True)
    params, batch, key = make_params(cfg), make_batch(cfg, weights=True), jax.random.key(3)
    traces = []

    def counted(params, batch, cfg, *, key=None):
        traces.append(cfg)  # runs once per trace (= per compilation), not per call
        return flax_value_and_grad(params, batch, cfg, key=key)

    step = jax.jit(counted, static_argnames="cfg")
    J_jit, g_jit = step(params, batch, cfg, key=key)
    assert_trees_close((J_jit, g_jit), flax_value_and_grad(params, batch, cfg, key=key), rtol=RTOL)
    shifted = jax.tree.map(lambda p: p + 0.01, params)
    J2, g2 = step(shifted, batch, cfg, key=jax.random.key(4))
    assert len(traces) == 1, "the second call with new values traced (and compiled) again"
    assert_trees_close((J2, g2), jax.value_and_grad(loss)(shifted, batch, cfg, key=jax.random.key(4)), rtol=RTOL)


def test_module_from_rngs_has_init_params_shapes_and_starting_values():
    cfg = make_cfg("prelu", "softmax", True)
    module = WindowClassifier(cfg, rngs=nnx.Rngs(0))
    params = to_params(module)
    assert {k: v.shape for k, v in params.items()} == model.param_shapes(cfg)
    assert all(v.dtype == jnp.float32 for v in params.values())
    assert np.all(params["b"] == 0) and np.all(params["c"] == 0) and params["alpha"] == nl.PRELU_ALPHA_INIT
    assert 0.005 < float(jnp.std(params["E"])) < 0.015  # N(0, 0.01^2) word vectors
    r = np.sqrt(6.0 / (cfg.input_dim + cfg.hidden_dim))  # Xavier bound for W
    assert np.max(np.abs(params["W"])) <= r and np.max(np.abs(params["W"])) > 0.8 * r


def test_nnx_optimizer_step_equals_optax_step_on_pure_params(x64):
    """Training the module with nnx.Optimizer moves it exactly as optax moves the pure dict."""
    cfg = make_cfg("tanh", "softmax", True)
    params, batch = make_params(cfg), make_batch(cfg, weights=False)
    module = from_params(params, cfg)
    optimizer = nnx.Optimizer(module, optax.sgd(0.1), wrt=nnx.Param)
    optimizer.update(module, nnx.grad(lambda m: flax_loss(m, batch, cfg))(module))
    _, grads = manual_value_and_grad(params, batch, cfg)
    assert_trees_close(to_params(module), jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), rtol=RTOL)


def test_bad_params_and_config_mismatch_are_reported(x64):
    cfg = make_cfg("relu", "softmax", False)
    params = make_params(cfg)
    with pytest.raises(ValueError, match=r"keys .*'alpha'"):
        from_params(params, make_cfg("prelu", "softmax", False))
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(7, 12\), got \(12, 7\)"):
        from_params({**params, "W": params["W"].T}, cfg)
    with pytest.raises(ValueError, match="module was built for"):
        flax_loss(from_params(params, cfg), make_batch(cfg, weights=False), make_cfg("tanh", "softmax", False))
    cased = make_cfg("relu", "softmax", True)
    with pytest.raises(ValueError, match="features"):
        from_params(make_params(cased), cased)(make_batch(cased, weights=False)["windows"])
