"""The CRF head: forward-backward against brute-force enumeration of all C^L tag paths, its
hand-derived gradient against jax.grad and numeric differences, Viterbi, padding invariance."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbackprop import ModelConfig, backprop, check_matrix, crf, decode, gradcheck, init_params, loss, model
from jaxbackprop.gradcheck import check_gradients
from jaxbackprop.nonlinearities import ACTIVATIONS
from tests.helpers import assert_trees_close

RTOL = gradcheck.MANUAL_VS_AUTODIFF_RTOL
TAGS = ["O", "B-PER", "I-PER"]


# ----------------------------------------------------------------------------- brute force


def path_scores(e, T, start, end):
    """Every tag path of one sentence and its score: ((C^n, n) paths, (C^n,) scores); e is (n, C)."""
    n, C = e.shape
    paths = np.array(list(itertools.product(range(C), repeat=n)))
    scores = start[paths[:, 0]] + e[np.arange(n), paths].sum(1) + T[paths[:, :-1], paths[:, 1:]].sum(1)
    return paths, scores + end[paths[:, -1]]


def logsumexp(x):
    top = np.max(x)
    return top + np.log(np.sum(np.exp(x - top)))


def random_scores(rng, S, L, C, *, empty_ok=True):
    """Emissions (S, L, C), a prefix mask with random lengths (0 allowed) and T, start, end, float64."""
    lengths = rng.integers(0 if empty_ok else 1, L + 1, S)
    mask = np.arange(L)[None, :] < lengths[:, None]
    e, T, start, end = (rng.normal(size=shape) for shape in ((S, L, C), (C, C), (C,), (C,)))
    return e, mask, T, start, end


@functools.partial(jax.jit, compiler_options=gradcheck.FAST_COMPILE)
def forward_backward(e, mask, T, start, end):
    """log Z, beta, the marginals and the pair marginals, in one program (each example has new shapes)."""
    alpha = crf.forward_scores(e, mask, T, start)
    beta = crf.backward_scores(e, mask, T, end)
    log_z = crf.log_partition(alpha, end)
    return log_z, beta, crf.marginals(alpha, beta, log_z, mask), crf.pair_marginals(alpha, beta, e, mask, T, log_z)


shapes = dict(S=st.integers(1, 3), L=st.integers(1, 4), C=st.integers(2, 3), seed=st.integers(0, 2**16))


@settings(max_examples=15, deadline=None)
@given(**shapes)
def test_log_partition_and_marginals_equal_brute_force(S, L, C, seed):
    with jax.enable_x64(True):
        e, mask, T, start, end = random_scores(np.random.default_rng(seed), S, L, C)
        log_z, beta, p, xi = jax.device_get(forward_backward(e, mask, T, start, end))
    for s, n in enumerate(mask.sum(1)):
        if n == 0:
            assert not p[s].any() and not xi[s].any()
            continue
        paths, scores = path_scores(e[s, :n], T, start, end)
        assert abs(float(log_z[s]) - logsumexp(scores)) <= 1e-12 * max(1.0, abs(logsumexp(scores)))
        # log Z from the other end: the backward recursion's beta_1 with start and e_1
        from_beta = logsumexp(start + e[s, 0] + np.asarray(beta[s, 0]))
        assert abs(from_beta - logsumexp(scores)) <= 1e-12 * max(1.0, abs(from_beta))
        prob = np.exp(scores - logsumexp(scores))
        for t in range(n):
            brute = np.bincount(paths[:, t], weights=prob, minlength=C)
            np.testing.assert_allclose(p[s, t], brute, rtol=1e-11, atol=1e-14)
            if t > 0:
                pairs = np.zeros((C, C))
                np.add.at(pairs, (paths[:, t - 1], paths[:, t]), prob)
                np.testing.assert_allclose(xi[s, t - 1], pairs, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(p[s, :n].sum(1), 1.0, rtol=1e-13)
        assert not p[s, n:].any() and not xi[s, n - 1 :].any()  # padding: exactly 0


@functools.partial(jax.jit, compiler_options=gradcheck.FAST_COMPILE)
def gold_and_nll(e, tags, mask, T, start, end):
    return crf.gold_score(e, tags, mask, T, start, end), crf.sentence_nll(e, tags, mask, T, start, end)


@settings(max_examples=15, deadline=None)
@given(**shapes)
def test_gold_score_and_nll_equal_brute_force(S, L, C, seed):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        e, mask, T, start, end = random_scores(rng, S, L, C)
        tags = np.where(mask, rng.integers(0, C, (S, L)), -1)  # padding labels are ignored
        gold, nll = jax.device_get(gold_and_nll(e, tags, mask, T, start, end))
    for s, n in enumerate(mask.sum(1)):
        if n == 0:
            assert gold[s] == 0 and nll[s] == 0
            continue
        paths, scores = path_scores(e[s, :n], T, start, end)
        mine = scores[np.flatnonzero((paths == tags[s, :n]).all(1))[0]]
        np.testing.assert_allclose(gold[s], mine, rtol=1e-13)
        np.testing.assert_allclose(nll[s], logsumexp(scores) - mine, rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(**shapes, constrained=st.booleans())
def test_viterbi_equals_the_brute_force_best_path(S, L, C, seed, constrained):
    C = 3 if constrained else C  # the IOB2 tags O, B-PER, I-PER
    with jax.enable_x64(True):
        e, mask, T, start, end = random_scores(np.random.default_rng(seed), S, L, C)
        constraints = decode.iob2_constraints(TAGS) if constrained else None
        best = np.asarray(crf.viterbi_decode(e, mask, T, start, end, constraints))
    c_start, c_T = constraints if constrained else (np.zeros(C), np.zeros((C, C)))
    for s, n in enumerate(mask.sum(1)):
        assert not best[s, n:].any()  # padding: 0
        if n:
            paths, scores = path_scores(e[s, :n], T + c_T, start + c_start, end)
            np.testing.assert_array_equal(best[s, :n], paths[np.argmax(scores)])


def test_viterbi_obeys_iob2_where_the_unconstrained_path_does_not():
    e = np.array([[[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]]])  # I-PER scores best everywhere
    mask, zeros = np.ones((1, 2), bool), np.zeros(3)
    assert crf.viterbi_decode(e, mask, np.zeros((3, 3)), zeros, zeros).tolist() == [[2, 2]]
    assert crf.viterbi_decode(e, mask, np.zeros((3, 3)), zeros, zeros, decode.iob2_constraints(TAGS)).tolist() == [
        [1, 2]
    ]


# ----------------------------------------------------------------------------- the model's gradient


def crf_config(**changes):
    base = dict(vocab_size=20, embed_dim=3, window=3, hidden_dim=5, num_classes=3, activation="tanh", head="crf")
    return ModelConfig(**{**base, **changes})


def sentence_batch(cfg, rng, lengths, L, *, weights=False):
    """Padded sentences of the given lengths with their windows (<s> = 1, </s> = 2) and labels (-1 at padding)."""
    lengths = np.asarray(lengths)
    words = rng.integers(3, cfg.vocab_size, (len(lengths), L), dtype=np.int32)
    mask = np.arange(L)[None, :] < lengths[:, None]
    labels = np.where(mask, rng.integers(0, cfg.num_classes, mask.shape), -1).astype(np.int32)
    batch = {"windows": check_matrix.sentence_windows(words, lengths, cfg.window), "labels": labels, "mask": mask}
    if cfg.uses_features:
        batch["features"] = rng.integers(0, cfg.feature_vocab_size, (*mask.shape, cfg.feature_width), dtype=np.int32)
    if weights:
        batch["weights"] = rng.uniform(0.5, 2.0, len(lengths))
    return batch


@functools.partial(jax.jit, static_argnames="cfg", compiler_options=gradcheck.FAST_COMPILE)
def both_grads(params, batch, cfg, key=None):
    return backprop.manual_value_and_grad(params, batch, cfg, key=key), jax.value_and_grad(loss)(
        params, batch, cfg, key=key
    )


@settings(max_examples=15, deadline=None)
@given(
    S=st.integers(1, 4),
    L=st.integers(1, 5),
    C=st.integers(2, 4),
    window=st.sampled_from([1, 3]),
    activation=st.sampled_from(ACTIVATIONS),
    features=st.booleans(),
    l2=st.sampled_from([0.0, 0.3]),
    dropout=st.booleans(),
    weights=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_manual_equals_jax_grad_over_shapes(S, L, C, window, activation, features, l2, dropout, weights, seed):
    cfg = crf_config(
        num_classes=C,
        window=window,
        activation=activation,
        l2=l2,
        dropout=0.25 if dropout else 0.0,
        feature_vocab_size=4 if features else 0,
        feature_dim=2 if features else 0,
    )
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        params = check_matrix.check_params(seed, cfg)
        batch = sentence_batch(cfg, rng, rng.integers(0, L + 1, S), L, weights=weights)  # empty ones too
        (J_m, g_m), (J_a, g_a) = both_grads(params, batch, cfg, jax.random.key(seed) if dropout else None)
        assert abs(float(J_m) - float(J_a)) <= 1e-12 * max(1.0, abs(float(J_a)))
        assert_trees_close(g_m, g_a, rtol=RTOL)


@pytest.mark.parametrize(
    "lengths", [[1, 1, 1], [4, 0, 2, 1], [4]], ids=["length 1", "padding and an empty sentence", "one sentence"]
)
def test_check_passes_manual_autodiff_and_numeric(lengths):
    cfg = crf_config(l2=0.05, feature_vocab_size=4, feature_dim=2)
    batch = sentence_batch(cfg, np.random.default_rng(0), lengths, 4, weights=True)
    batch["windows"][0, 0, 0] = batch["windows"][0, 0, 2]  # a word twice in one window
    result = check_gradients(check_matrix.check_params(0, cfg), batch, cfg)
    assert result.passed, str(result)
    if max(lengths) == 1:  # no step from tag to tag: T's gradient is exactly zero
        assert result["T"].grad_max == 0.0
    else:
        assert all(t.grad_max > 1e-3 for t in result.tensors), str(result)


def test_dropping_the_transition_in_the_backward_recursion_is_caught(monkeypatch):
    """beta_t[i] = logsumexp_j (e_{t+1}[j] + beta_{t+1}[j]), forgetting T[i, j]: the marginals go wrong."""

    def no_transition(beta_next, e_next, T):
        return jnp.broadcast_to(jax.nn.logsumexp(e_next + beta_next, axis=1)[:, None], beta_next.shape)

    monkeypatch.setattr(crf, "backward_step", no_transition)
    cfg = crf_config()
    batch = sentence_batch(cfg, np.random.default_rng(0), [4, 2, 3], 4)
    # a fresh callable, so the check traces the patched code instead of reusing a compiled one
    patched = lambda *args, **kwargs: backprop.manual_value_and_grad(*args, **kwargs)  # noqa: E731
    result = check_gradients(check_matrix.check_params(0, cfg), batch, cfg, value_and_grad=patched)
    assert not result.passed and not result["T"].manual_vs_autodiff.passed
    assert result["T"].numeric_vs_autodiff.passed  # jax.grad differentiates the forward algorithm only
    row = next(line for line in str(result).splitlines() if line.startswith("T "))
    assert row.endswith("NO")


def test_padding_and_empty_sentences_change_nothing(x64):
    cfg = crf_config(l2=0.1, feature_vocab_size=4, feature_dim=2)
    params = check_matrix.check_params(1, cfg)
    rng = np.random.default_rng(2)
    batch = sentence_batch(cfg, rng, [3, 1, 2], 3, weights=True)
    padded = sentence_batch(cfg, rng, [0, 0, 0, 0], 6, weights=True)  # other ids, labels and weights
    for k in ("windows", "labels", "features"):
        padded[k][:3, :3] = batch[k]
    padded["mask"][:3, :3] = batch["mask"]
    padded["weights"][:3] = batch["weights"]
    padded["windows"][~padded["mask"]] = 0  # a word only padding names (real windows use ids >= 1)
    (J, g), (J_auto, _) = both_grads(params, batch, cfg)
    (Jp, gp), (Jp_auto, _) = both_grads(params, padded, cfg)
    np.testing.assert_allclose([Jp, Jp_auto], [J, J_auto], rtol=1e-14)
    assert_trees_close(gp, g, rtol=1e-13)
    assert not np.asarray(gp["E"][0]).any()  # padding passes back exactly 0


def test_only_empty_sentences_leave_the_penalty_alone(x64):
    cfg = crf_config(l2=0.1)
    params = check_matrix.check_params(0, cfg)
    batch = sentence_batch(cfg, np.random.default_rng(0), [0, 0], 3)
    (J, g), _ = both_grads(params, batch, cfg)
    np.testing.assert_allclose(J, model.l2_penalty(params, cfg), rtol=1e-14)
    assert not np.asarray(g["E"]).any() and not np.asarray(g["T"]).any()
    np.testing.assert_allclose(g["W"], cfg.l2 * params["W"], rtol=1e-14)


def test_a_fresh_crf_is_the_per_token_softmax(x64):
    """T, start, end start at zero: log Z factorises, so each sentence's loss is its tokens' cross-entropies."""
    cfg = crf_config(num_classes=4)
    params = init_params(jax.random.key(0), cfg, dtype=jnp.float64)
    assert {k: params[k].shape for k in ("T", "start", "end")} == {"T": (4, 4), "start": (4,), "end": (4,)}
    assert not any(np.asarray(params[k]).any() for k in ("T", "start", "end"))
    batch = sentence_batch(cfg, np.random.default_rng(0), [3, 2], 3)
    e = model.sentence_emissions(params, batch["windows"], cfg)
    ce = -np.take_along_axis(np.asarray(jax.nn.log_softmax(e)), np.maximum(batch["labels"], 0)[..., None], 2)[..., 0]
    np.testing.assert_allclose(loss(params, batch, cfg), np.mean(np.sum(ce * batch["mask"], axis=1)), rtol=1e-13)


def test_grads_have_params_structure_shapes_dtypes_and_are_finite():
    cfg = crf_config(activation="prelu", feature_vocab_size=4, feature_dim=2)
    params = init_params(jax.random.key(0), cfg)
    batch = sentence_batch(cfg, np.random.default_rng(0), [3, 0, 2], 4)
    (J, g), _ = both_grads(params, batch, cfg)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    for k in params:
        assert g[k].shape == params[k].shape and g[k].dtype == params[k].dtype == jnp.float32, k
        assert np.all(np.isfinite(g[k])), k
    assert np.isfinite(J) and J.shape == ()


def test_manual_path_calls_no_autodiff(monkeypatch, x64):
    def forbidden(*args, **kwargs):
        raise AssertionError("autodiff used on the manual path")

    for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize", "custom_vjp", "custom_jvp"):
        monkeypatch.setattr(jax, name, forbidden)
    cfg = crf_config(dropout=0.2)
    params = check_matrix.check_params(0, cfg)
    batch = sentence_batch(cfg, np.random.default_rng(0), [3, 1], 3)
    J, g = backprop.manual_value_and_grad(params, batch, cfg, key=jax.random.key(0))
    assert np.isfinite(J) and set(g) == set(params)


@pytest.mark.parametrize("case", check_matrix.SENTENCE_CASES)
def test_sentence_case_batches_are_what_they_say(case):
    cfg = model.ModelConfig(head="crf", **check_matrix.MATRIX_MODEL)
    batch, key = check_matrix.case_batch(case, 0, cfg)
    model.validate_batch(batch, cfg)
    lengths = batch["mask"].sum(1)
    assert lengths[0] == check_matrix.SENTENCE_LENGTH and (key is not None) == (case == "random sentences")
    if case == "one sentence":
        assert batch["windows"].shape[0] == 1
    if case == "padded sentences":
        assert {0, 1} <= set(lengths.tolist()) and "weights" in batch and (batch["labels"] == -1).any()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.update(mask=b["mask"][:, ::-1].copy()), "is not a prefix"),
        (lambda b: b["labels"].__setitem__((0, 0), 7), r"labels'\]\[0, 0\] = 7 is out of range"),
        (lambda b: b.pop("mask"), "needs keys"),
        (lambda b: b.update(windows=b["windows"][0]), "must have shape"),
        (lambda b: b.update(mask=b["mask"].astype(int)), "must be bool"),
    ],
)
def test_bad_sentence_batches_are_named(change, message):
    cfg = crf_config()
    batch = sentence_batch(cfg, np.random.default_rng(0), [3, 1], 3)
    change(batch)
    with pytest.raises(ValueError, match=message):
        loss(check_matrix.check_params(0, cfg), batch, cfg)
