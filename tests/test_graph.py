"""The teaching graph engine against jax.grad (float64), and the lecture's worked example."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbackprop import ModelConfig, graph, graph_demo, graph_model, init_params, loss, model
from jaxbackprop import nonlinearities as nl

RTOL = 1e-10
# a few gradient entries are differences of nearly equal terms (true minus corrupted window)
ATOL = 1e-13


def assert_trees_close(actual, expected):
    """Same keys, shapes and dtypes, then every leaf close; the failing key is in the message."""
    assert sorted(actual) == sorted(expected)
    for k in expected:
        assert actual[k].shape == expected[k].shape, k
        assert actual[k].dtype == expected[k].dtype, k
        np.testing.assert_allclose(actual[k], expected[k], rtol=RTOL, atol=ATOL, err_msg=f"grad[{k!r}]")


# ----------------------------------------------------------------------------- the lecture's example


def test_lecture_example_numbers():
    g = graph_demo.lecture_example()
    values = {k: float(n.value) for k, n in g.items()}
    grads = {k: float(n.grad) for k, n in g.items()}
    assert values == {"x": 1, "y": 2, "z": 0, "a": 3, "b": 2, "f": 6}
    assert (grads["x"], grads["y"], grads["z"]) == (2, 5, 0)
    # upstream gradients of the inner nodes: df/da = b = 2, df/db = a = 3, df/df = 1
    assert (grads["a"], grads["b"], grads["f"]) == (2, 3, 1)


def test_lecture_example_other_point():
    g = graph_demo.lecture_example(1.0, 2.0, 4.0)  # z > y: max routes to z now
    assert float(g["f"].value) == 12
    assert [float(g[k].grad) for k in "xyz"] == [4, 4, 3]


def test_demo_text_shows_the_numbers():
    text = graph_demo.demo_text()
    assert text.isascii()
    for piece in [
        "a = x + y",
        "= 3",
        "b = max(y, z)",
        "f = a * b",
        "= 6",
        "df/da = b = 2",
        "df/db = a = 3",
        "db/dy = [y >= z] = 1",
        "db/dz = [z > y] = 0",
        "df/dx = 2",
        "df/dy = 2 + 3 = 5",
        "df/dz = 0",
        "f(1, 2.1, 0) - f(1, 2, 0)",
        "= 6.51 - 6",
        "= 0.51",
        "0.1 * 5",
        "= 0.5",
        "gradients sum: 2 + 3 = 5",
        "+ distributes",
        "a = x + y sends 2 to x and 2 to y",
        "max routes",
        "b = max(y, z) sends 3 to y and 0 to z",
        "* switches",
        "f = a * b sends 1 * 2 = 2 to a and 1 * 3 = 3 to b",
    ]:
        assert piece in text, piece
    assert max(len(line) for line in text.splitlines()) <= 80  # fits a terminal


def test_demo_text_wiggle_is_computed():
    # f(1, 3, 0) = 4 * 3 = 12, df/dy = b + a = 3 + 4 = 7; f(1, 3.1, 0) = 4.1 * 3.1 = 12.71
    text = graph_demo.demo_text(y=3.0)
    assert "df/dy = 3 + 4 = 7" in text
    assert "= 12.71 - 12" in text and "= 0.71" in text and "0.1 * 7" in text


# ----------------------------------------------------------------------------- each op vs jax.grad


def _take(log_p, labels):
    return -jnp.take_along_axis(log_p, labels[:, None], axis=1)[:, 0]


LABELS = jnp.array([2, 0, 2, 1])
IDS = jnp.array([[1, 3, 1], [0, 1, 4]])

# (name, input shapes, graph version, jax version); jax versions broadcast explicitly
OPS = [
    ("add", [(3, 4), (3, 4)], lambda a, b: a + b, lambda a, b: a + b),
    ("add_row", [(3, 4), (4,)], lambda a, b: a + b, lambda a, b: a + b[None, :]),
    ("add_col_row", [(3, 1), (1, 4)], graph.add, lambda a, b: jnp.broadcast_to(a, (3, 4)) + b),
    ("add_scalar", [(), (2, 3)], lambda a, b: a + b, lambda a, b: a + b),
    ("add_const", [(2, 3)], lambda a: 1.5 + a, lambda a: 1.5 + a),
    ("sub", [(3, 4), (4,)], lambda a, b: a - b, lambda a, b: a - b[None, :]),
    ("rsub_neg", [(3,)], lambda a: 1.0 - (-a), lambda a: 1.0 + a),
    ("mul", [(3, 4), (3, 4)], lambda a, b: a * b, lambda a, b: a * b),
    ("mul_broadcast", [(3, 4), (3, 1)], lambda a, b: a * b, lambda a, b: a * b),
    ("mul_scalar", [(2, 3)], lambda a: 0.5 * a, lambda a: 0.5 * a),
    ("maximum", [(3, 4), (3, 4)], graph.maximum, jnp.maximum),
    ("maximum_row", [(3, 4), (4,)], graph.maximum, lambda a, b: jnp.maximum(a, b[None, :])),
    ("matmul", [(3, 4), (4, 2)], lambda a, b: a @ b, lambda a, b: a @ b),
    ("matmul_mat_vec", [(3, 4), (4,)], lambda a, b: a @ b, lambda a, b: a @ b),
    ("matmul_vec_mat", [(4,), (4, 2)], lambda a, b: a @ b, lambda a, b: a @ b),
    ("dot", [(5,), (5,)], graph.dot, jnp.dot),
    ("transpose", [(3, 4)], graph.transpose, lambda a: a.T),
    ("reshape", [(2, 3, 2)], lambda a: graph.reshape(a, (3, 4)), lambda a: a.reshape(3, 4)),
    ("concat_0", [(2, 3), (1, 3)], lambda a, b: graph.concat([a, b]), lambda a, b: jnp.concatenate([a, b])),
    (
        "concat_1",
        [(2, 3), (2, 1), (2, 2)],
        lambda *xs: graph.concat(xs, axis=1),
        lambda *xs: jnp.concatenate(xs, axis=1),
    ),
    ("sum_all", [(3, 4)], graph.sum, jnp.sum),
    ("sum_0", [(3, 4)], lambda a: graph.sum(a, axis=0), lambda a: jnp.sum(a, axis=0)),
    ("sum_last", [(2, 3, 4)], lambda a: graph.sum(a, axis=-1), lambda a: jnp.sum(a, axis=-1)),
    *[(f, [(3, 5)], getattr(graph, f), lambda z, f=f: nl.apply(f, z)) for f in nl.ACTIVATIONS[:-1]],
    ("prelu", [(3, 5), ()], graph.prelu, lambda z, alpha: nl.apply("prelu", z, alpha)),
    (
        "softmax_cross_entropy",
        [(4, 3)],
        lambda l: graph.softmax_cross_entropy(l, LABELS),
        lambda l: _take(jax.nn.log_softmax(l, axis=-1), LABELS),
    ),
    ("embedding_repeated_ids", [(5, 2)], lambda E: graph.embedding(E, IDS), lambda E: E[IDS]),
]


def _graph_value_and_grads(graph_fn, upstream, *args):
    nodes = [graph.Node(a) for a in args]
    out = graph_fn(*nodes)
    graph.sum(out * upstream).backward()
    return out.value, [n.grad for n in nodes]


@pytest.mark.parametrize("name, shapes, graph_fn, jax_fn", OPS, ids=[op[0] for op in OPS])
def test_op_backward_matches_jax_grad(x64, name, shapes, graph_fn, jax_fn):
    rng = np.random.default_rng(0)
    args = [jnp.asarray(rng.normal(size=s) * 2) for s in shapes]
    # a random upstream gradient, so a wrong local gradient cannot hide behind all-ones
    upstream = jnp.asarray(rng.normal(size=jax.eval_shape(jax_fn, *args).shape))

    @jax.jit  # one compiled program for both sides, instead of one per eager op
    def both(upstream, *args):
        reference = jax.grad(lambda *xs: jnp.sum(jax_fn(*xs) * upstream), argnums=tuple(range(len(args))))
        return _graph_value_and_grads(graph_fn, upstream, *args), (jax_fn(*args), reference(*args))

    (out, grads), (expected_out, expected) = both(upstream, *args)
    np.testing.assert_allclose(out, expected_out, rtol=RTOL)
    for i, (g, g_ref) in enumerate(zip(grads, expected)):
        assert g.shape == args[i].shape
        np.testing.assert_allclose(g, g_ref, rtol=RTOL, atol=ATOL, err_msg=f"{name}: input {i}")


def test_node_used_twice_sums_its_gradients():
    a = graph.Node(3.0)
    (a * a + a).backward()
    assert float(a.grad) == 7.0  # d(a^2 + a)/da = 2a + 1


def test_branching_expression_matches_jax_grad(x64):
    rng = np.random.default_rng(1)
    a, W, v = (jnp.asarray(rng.normal(size=s)) for s in [(3, 4), (4, 4), (4,)])

    def jax_f(a, W, v):
        z = a @ W  # z feeds tanh, the max and the sum: three branches
        h = jnp.tanh(z)
        return jnp.sum(h * z + jnp.maximum(z, h)) + jnp.sum(z @ v) + jnp.sum(a * a)

    def graph_f(a, W, v):
        z = a @ W
        h = graph.tanh(z)
        return graph.sum(h * z + graph.maximum(z, h)) + graph.sum(z @ v) + graph.sum(a * a)

    nodes = [graph.Node(x) for x in (a, W, v)]
    out = graph_f(*nodes)
    out.backward()
    np.testing.assert_allclose(out.value, jax_f(a, W, v), rtol=RTOL)
    for node, g in zip(nodes, jax.grad(jax_f, argnums=(0, 1, 2))(a, W, v)):
        np.testing.assert_allclose(node.grad, g, rtol=RTOL, atol=ATOL)


def test_broadcast_add_sums_over_broadcast_axes():
    a, b, c = graph.Node(jnp.zeros((3, 1))), graph.Node(jnp.zeros((4,))), graph.Node(0.0)
    graph.sum(a + b + c).backward()  # out is (3, 4): a used 4 times per row, b 3 times, c 12
    np.testing.assert_array_equal(a.grad, np.full((3, 1), 4.0))
    np.testing.assert_array_equal(b.grad, np.full((4,), 3.0))
    assert c.grad.shape == () and float(c.grad) == 12.0


def test_embedding_scatter_adds_repeated_ids():
    E = graph.Node(jnp.ones((5, 2)))
    graph.sum(graph.embedding(E, jnp.array([[1, 3, 1], [1, 0, 0]]))).backward()
    # row v gets one gradient per occurrence of v; row 2 and row 4 are never used: exactly 0
    np.testing.assert_array_equal(E.grad, np.array([[2, 2], [3, 3], [0, 0], [1, 1], [0, 0]], float))


def test_max_routes_to_the_larger_and_ties_go_to_the_first_argument():
    a, b = graph.Node(jnp.array([1.0, 5.0, 2.0])), graph.Node(jnp.array([3.0, 5.0, 0.0]))
    out = graph.maximum(a, b)
    graph.sum(out).backward()
    np.testing.assert_array_equal(out.value, [3.0, 5.0, 2.0])
    np.testing.assert_array_equal(a.grad, [0.0, 1.0, 1.0])  # the tie (5 vs 5) goes to a
    np.testing.assert_array_equal(b.grad, [1.0, 0.0, 0.0])


def test_hinge_subgradient_is_zero_at_the_kink():
    m = graph.Node(jnp.array([-1.0, 0.0, 2.0]))
    graph.sum(graph.maximum(0.0, m)).backward()  # the constant first: the tie at m = 0 goes to it
    np.testing.assert_array_equal(m.grad, [0.0, 0.0, 1.0])
    m2 = graph.Node(jnp.array([-1.0, 0.0, 2.0]))
    graph.sum(graph.maximum(m2, 0.0)).backward()  # m first: the tie goes to m
    np.testing.assert_array_equal(m2.grad, [0.0, 1.0, 1.0])


def test_backward_needs_a_scalar():
    out = graph.Node(jnp.ones((2, 3))) * 2.0
    with pytest.raises(ValueError, match=r"scalar output.*\(2, 3\)"):
        out.backward()


def test_backward_twice_gives_the_same_grads():
    a = graph.Node(jnp.array([1.0, 2.0]))
    out = graph.sum(a * a)
    out.backward()
    out.backward()
    np.testing.assert_array_equal(a.grad, [2.0, 4.0])


def test_numpy_array_on_the_left_makes_a_node():
    a = graph.Node(jnp.array([1.0, 2.0]))
    out = np.array([10.0, 20.0]) * a
    assert isinstance(out, graph.Node)
    graph.sum(out).backward()
    np.testing.assert_array_equal(a.grad, [10.0, 20.0])


# ----------------------------------------------------------------------------- the window model


def make_batch(rng, cfg, B, weighted):
    def ids(upper, width=cfg.window):
        return jnp.asarray(rng.integers(0, upper, (B, width)))

    batch = {"windows": ids(cfg.vocab_size)}
    if cfg.head == "softmax":
        batch["labels"] = jnp.asarray(rng.integers(0, cfg.num_classes, (B,)))
    else:
        batch["corrupt"] = ids(cfg.vocab_size)
    if cfg.uses_features:
        batch["features"] = ids(cfg.feature_vocab_size, cfg.feature_width)
        if cfg.head == "score":
            batch["corrupt_features"] = ids(cfg.feature_vocab_size, cfg.feature_width)
    if weighted:
        batch["weights"] = jnp.asarray(rng.uniform(0.1, 1.0, (B,)))
    return batch


def random_params(rng, cfg):
    """Every parameter random (biases and alpha too), float64: no zero hides a wrong rule."""
    return {k: jnp.asarray(rng.normal(size=shape)) for k, shape in model.param_shapes(cfg).items()}


def check_against_jax(params, batch, cfg):
    J, grads = graph_model.graph_value_and_grad(params, batch, cfg)
    J_ref, grads_ref = jax.value_and_grad(loss)(params, batch, cfg)
    np.testing.assert_allclose(J, J_ref, rtol=RTOL)
    assert_trees_close(grads, grads_ref)
    return grads


def small_config(**changes):
    base = dict(vocab_size=20, embed_dim=4, window=3, hidden_dim=7, num_classes=5, l2=0.1)
    return ModelConfig(**{**base, **changes})


@pytest.mark.parametrize("features", [False, True], ids=["words", "features"])
@pytest.mark.parametrize("head", ["softmax", "score"])
@pytest.mark.parametrize("activation", nl.ACTIVATIONS)
def test_window_model_graph_equals_jax_grad(x64, activation, head, features):
    cfg = small_config(activation=activation, head=head, feature_vocab_size=3 * features, feature_dim=2 * features)
    rng = np.random.default_rng(0)
    batch = make_batch(rng, cfg, B=6, weighted=features)  # a weighted mean in half of the cases
    grads = check_against_jax(random_params(rng, cfg), batch, cfg)
    used = np.unique(np.concatenate([np.ravel(batch[k]) for k in ("windows", "corrupt") if k in batch]))
    unused = np.setdiff1d(np.arange(cfg.vocab_size), used)
    assert unused.size and not np.any(np.asarray(grads["E"])[unused])  # untouched rows: exactly 0
    assert np.any(np.asarray(grads["E"])[used])  # and the check is not passing on all-zero grads


# The property test traces the (mutable, Python-level) engine under jit, next to the reference:
# the same ops run on tracers and XLA compiles one program per example, instead of one per op.
@functools.partial(jax.jit, static_argnums=2)
def _graph_and_reference(params, batch, cfg):
    return graph_model.graph_value_and_grad(params, batch, cfg), jax.value_and_grad(loss)(params, batch, cfg)


@settings(max_examples=15, deadline=None, database=None)
@given(
    V=st.integers(1, 6),
    d=st.integers(1, 3),
    window=st.sampled_from([1, 3, 5]),
    H=st.integers(1, 4),
    C=st.integers(2, 4),
    B=st.integers(1, 4),
    activation=st.sampled_from(nl.ACTIVATIONS),
    head=st.sampled_from(model.HEADS),
    features=st.integers(0, 3),
    k=st.integers(1, 2),
    weighted=st.booleans(),
    l2=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_window_model_graph_property(V, d, window, H, C, B, activation, head, features, k, weighted, l2, seed):
    with jax.enable_x64(True):
        cfg = ModelConfig(
            vocab_size=V,
            embed_dim=d,
            window=window,
            hidden_dim=H,
            num_classes=C,
            activation=activation,
            head=head,
            l2=l2,
            feature_vocab_size=features,
            feature_dim=min(features, 2),
            features_per_word=k,
        )
        rng = np.random.default_rng(seed)
        batch = make_batch(rng, cfg, B, weighted)
        (J, grads), (J_ref, grads_ref) = _graph_and_reference(random_params(rng, cfg), batch, cfg)
        np.testing.assert_allclose(J, J_ref, rtol=RTOL)
        assert_trees_close(grads, grads_ref)


def test_loss_node_is_the_model_loss_and_param_nodes_are_named(x64):
    cfg = small_config(activation="prelu", l2=0.5)
    params = init_params(jax.random.key(1), cfg, dtype=jnp.float64)  # as training starts: b = c = 0
    batch = make_batch(np.random.default_rng(1), cfg, B=6, weighted=False)
    loss_node, nodes = graph_model.window_model_graph(params, batch, cfg)
    assert sorted(nodes) == sorted(params) and all(nodes[k].name == k for k in nodes)
    np.testing.assert_allclose(loss_node.value, loss(params, batch, cfg), rtol=RTOL)
    loss_node.backward()
    assert_trees_close({k: n.grad for k, n in nodes.items()}, jax.grad(loss)(params, batch, cfg))


def test_graph_has_no_dropout(x64):
    cfg = small_config(dropout=0.5)
    rng = np.random.default_rng(0)
    params, batch = random_params(rng, cfg), make_batch(rng, cfg, 6, False)
    check_against_jax(params, batch, cfg)  # no key: loss applies no dropout either
    with pytest.raises(ValueError, match="no dropout"):
        graph_model.graph_value_and_grad(params, batch, cfg, key=jax.random.key(1))
