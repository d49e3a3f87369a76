"""Rows-only embedding updates: SGD and Adagrad equal the dense optax update (float64), lazy
Adam equals a plain numpy SparseAdam loop, and only the batch's rows of E ever move."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbackprop import (
    ModelConfig,
    backprop,
    gradcheck,
    manual_value_and_grad,
    model,
    sparse,
)
from tests.helpers import assert_trees_close

# float64; sparse and dense sum a repeated word's rows in different orders: an entry sums at most
# B n ~ 12 rows per step over STEPS = 5 steps, ~60 eps64 ~ 1e-14 of the tensor's scale; 1e-12 leaves a
# factor 100 for Adagrad's and Adam's division by sqrt(v), which magnifies a nearly cancelling entry
RTOL = 1e-12
V, D = 12, 3
STEPS = 5
FAST_COMPILE = gradcheck.FAST_COMPILE  # reference programs only: XLA's optimisation passes off

# (name, config, dropout key?): the step must match the dense path for both heads, with features
CONFIGS = [
    ("softmax", ModelConfig(vocab_size=20, embed_dim=4, window=3, hidden_dim=6, num_classes=4, l2=0.1), False),
    (
        "score-features-dropout",
        ModelConfig(
            vocab_size=20,
            embed_dim=4,
            window=3,
            hidden_dim=6,
            head="score",
            activation="tanh",
            dropout=0.2,
            feature_vocab_size=3,
            feature_dim=2,
        ),
        True,
    ),
]


def make_params(cfg, seed=0):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.normal(0.0, 0.5, s)) for k, s in model.param_shapes(cfg).items()}


def make_batch(cfg, rng, B=4, used=12):
    """Windows over word ids < used (rows used..V-1 never appear), each repeating a word."""
    windows = rng.integers(0, used, (B, cfg.window), dtype=np.int32)
    windows[:, -1] = windows[:, 0]
    batch = {"windows": windows}
    if cfg.head == "softmax":
        batch["labels"] = rng.integers(0, cfg.num_classes, B, dtype=np.int32)
    else:
        batch["corrupt"] = rng.integers(0, used, (B, cfg.window), dtype=np.int32)
    if cfg.uses_features:
        batch["features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.window), dtype=np.int32)
        if cfg.head == "score":
            batch["corrupt_features"] = rng.integers(0, cfg.feature_vocab_size, (B, cfg.window), dtype=np.int32)
    return batch


def random_rows(rng, n, num_ids=6):
    """n gradient rows over ids < num_ids (< V): repeats are certain, rows num_ids.. untouched."""
    return jnp.asarray(rng.integers(0, num_ids, n, dtype=np.int32)), jnp.asarray(rng.normal(size=(n, D)))


def unique(ids, rows):
    return sparse.unique_row_grads(ids, rows, sparse.empty_slots(V))[:2]


def copy(tree):
    return jax.tree.map(jnp.copy, tree)


# ----------------------------------------------------------------------------- unique_row_grads


def test_unique_row_grads_sums_repeats_and_pads_out_of_range(x64):
    rng = np.random.default_rng(0)
    ids, rows = random_rows(rng, 10)
    # a scratch table full of stale entries (as a training step leaves it) must not matter
    stale = jnp.asarray(np.random.default_rng(1).integers(0, 10, V, dtype=np.int32))
    uids, ugrads, _ = jax.jit(sparse.unique_row_grads)(ids, rows, stale)
    assert uids.shape == (10,) and ugrads.shape == (10, D)
    uids, ugrads, ids, rows = map(np.asarray, (uids, ugrads, ids, rows))
    real = uids < V
    np.testing.assert_array_equal(np.sort(uids[real]), np.unique(ids))  # each distinct id once
    assert real[: real.sum()].all()  # the distinct ids first, then padding
    for slot in np.flatnonzero(real):
        np.testing.assert_allclose(ugrads[slot], rows[ids == uids[slot]].sum(0), rtol=RTOL)
    pad = uids[~real]
    assert len(set(pad.tolist())) == len(pad) and np.all(pad >= 2**30), pad  # distinct, out of range
    np.testing.assert_array_equal(ugrads[~real], 0.0)


def test_unique_row_grads_leaves_out_positions_not_kept(x64):
    ids = jnp.asarray([4, 2, 4, 9, 2, 7], jnp.int32)
    rows = jnp.asarray(np.random.default_rng(2).normal(size=(6, D)))
    keep = jnp.asarray([True, False, True, False, True, False])  # 9 and 7 appear only where not kept
    stale = jnp.asarray(np.random.default_rng(1).integers(0, 6, V, dtype=np.int32))
    uids, ugrads, _ = jax.jit(sparse.unique_row_grads)(ids, rows, stale, keep)
    uids, ugrads, rows = np.asarray(uids), np.asarray(ugrads), np.asarray(rows)
    real = uids < V
    assert sorted(uids[real].tolist()) == [2, 4]
    for slot in np.flatnonzero(real):  # only the kept rows are summed
        want = rows[[0, 2]].sum(0) if uids[slot] == 4 else rows[4]
        np.testing.assert_allclose(ugrads[slot], want, rtol=RTOL)
    assert len(set(uids[~real].tolist())) == 4 and np.all(uids[~real] >= 2**30)
    np.testing.assert_array_equal(ugrads[~real], 0.0)
    everything = sparse.unique_row_grads(jnp.asarray(ids), jnp.asarray(rows), sparse.empty_slots(V), jnp.ones(6, bool))
    assert_trees_close(everything[:2], unique(jnp.asarray(ids), jnp.asarray(rows)), rtol=0)


def test_unique_row_grads_rejects_mismatched_rows():
    with pytest.raises(ValueError, match=r"rows must have shape \(3, d\)"):
        sparse.unique_row_grads(jnp.arange(3), jnp.zeros((4, 2)), sparse.empty_slots(V))
    with pytest.raises(ValueError, match="size must be at least the 3 ids, got 2"):
        sparse.unique_row_grads(jnp.arange(3), jnp.zeros((3, 2)), sparse.empty_slots(V), size=2)


def test_unique_row_grads_pads_to_size(x64):
    ids, rows = random_rows(np.random.default_rng(8), 10)
    uids, ugrads, _ = sparse.unique_row_grads(ids, rows, sparse.empty_slots(V), size=16)
    short_ids, short_grads = unique(ids, rows)
    distinct = int(np.sum(np.asarray(short_ids) < V))
    assert uids.shape == (16,) and ugrads.shape == (16, D)
    np.testing.assert_array_equal(uids[:distinct], short_ids[:distinct])  # the same slots, the same sums
    np.testing.assert_array_equal(ugrads[:10], short_grads)
    np.testing.assert_array_equal(ugrads[10:], 0.0)
    assert len(set(np.asarray(uids[distinct:]).tolist())) == 16 - distinct and np.all(uids[distinct:] >= 2**30)


# ----------------------------------------------------------------------------- update_rows: passes


@pytest.mark.parametrize("name", sorted(sparse.RULES))
@pytest.mark.parametrize("num_ids", [3, 8, V], ids=["one-pass", "whole-passes", "half-the-slots"])
def test_update_rows_in_passes_equals_one_pass(name, num_ids, x64):
    """Passes of 4 slots that stop after the last distinct id change what one pass over all 24 slots
    changes: 3 distinct ids (one pass), 8 (two whole passes), 12 (three). The same arithmetic, compiled
    for 4 rows in a loop body rather than 24: XLA may fuse it differently (3e-17 apart in float64), so
    equal to rounding; every row no id names stays bit-identical."""
    rng = np.random.default_rng(9)
    ids = jnp.asarray(rng.permutation(np.resize(np.arange(num_ids), 24)), jnp.int32)  # every id present
    rows = jnp.asarray(rng.normal(size=(24, D)))
    E = jnp.asarray(rng.normal(size=(V, D)))
    rule = sparse.RULES[name]()
    uids, ugrads, _ = sparse.unique_row_grads(ids, rows, sparse.empty_slots(V), size=sparse.passes_size(24, 4))

    @functools.partial(jax.jit, static_argnums=0)
    def two_updates(chunk, E, state):  # twice: the second update reads state the first one wrote
        for t in (1, 2):
            E, state = sparse.update_rows(rule, E, state, uids, ugrads, 0.1, t, chunk)
        return E, state

    in_passes = two_updates(4, E, rule.init(E))
    assert_trees_close(in_passes, two_updates(None, E, rule.init(E)), rtol=RTOL)
    moved = np.flatnonzero(np.any(np.asarray(in_passes[0]) != np.asarray(E), axis=1))
    np.testing.assert_array_equal(moved, np.arange(num_ids))  # every distinct id, and only those


def test_update_rows_rejects_slots_that_are_not_whole_passes():
    ids, grads = sparse.unique_row_grads(jnp.arange(6), jnp.zeros((6, D)), sparse.empty_slots(V))[:2]
    with pytest.raises(ValueError, match="6 slots are not whole passes of 4"):
        sparse.update_rows(sparse.sgd(), jnp.zeros((V, D)), (), ids, grads, 0.1, 1, chunk=4)


# ----------------------------------------------------------------------------- rules vs dense


def run_rule(rule, dense_tx, lr, batches=None):
    """STEPS updates of a (V, D) table by the rows rule and by dense_tx on the dense gradient."""

    @jax.jit
    def sparse_update(E, state, ids, rows, t):
        return rule.update(E, state, *unique(ids, rows), jnp.asarray(lr), t)

    @jax.jit
    def dense_update(E, state, ids, rows):
        updates, state = dense_tx.update(backprop.scatter_rows(ids, rows, V), state, E)
        return optax.apply_updates(E, updates), state

    rng = np.random.default_rng(0)
    E = jnp.asarray(rng.normal(size=(V, D)))
    E_sparse, state = E, rule.init(E)
    E_dense, dense_state = E, dense_tx.init(E)
    batches = batches or [random_rows(rng, 8) for _ in range(STEPS)]
    for t, (ids, rows) in enumerate(batches, start=1):
        E_sparse, state = sparse_update(E_sparse, state, ids, rows, t)
        E_dense, dense_state = dense_update(E_dense, dense_state, ids, rows)
    return E_sparse, E_dense, state, dense_state


def test_sgd_rule_equals_optax_sgd(x64):
    E_sparse, E_dense, _, _ = run_rule(sparse.sgd(), optax.sgd(0.3), 0.3)
    assert_trees_close(E_sparse, E_dense, rtol=RTOL)


def test_adagrad_rule_equals_optax_adagrad(x64):
    E_sparse, E_dense, acc, dense_state = run_rule(sparse.adagrad(), optax.adagrad(0.3), 0.3)
    assert_trees_close(E_sparse, E_dense, rtol=RTOL)
    assert_trees_close(acc, dense_state[0].sum_of_squares, rtol=RTOL)


def numpy_lazy_adam(E, batches, lr, b1=0.9, b2=0.999, eps=1e-8):
    """SparseAdam's rule written out: a loop over each step's distinct rows, global step t."""
    E, m, v = np.array(E), np.zeros_like(E), np.zeros_like(E)
    for t, (ids, rows) in enumerate(batches, start=1):
        for r in np.unique(ids):
            g = rows[ids == r].sum(axis=0)
            m[r] = b1 * m[r] + (1 - b1) * g
            v[r] = b2 * v[r] + (1 - b2) * g * g
            E[r] -= lr * (m[r] / (1 - b1**t)) / (np.sqrt(v[r] / (1 - b2**t)) + eps)
    return E, m, v


def test_lazy_adam_equals_numpy_sparse_adam(x64):
    rng = np.random.default_rng(1)
    E0 = rng.normal(size=(V, D))
    # ids < 6 then ids 6..8: rows 6..8 first appear at step 4, with global-count bias correction
    batches = [(rng.integers(0, 6 if t < 3 else 9, 8), rng.normal(size=(8, D))) for t in range(STEPS)]
    rule = sparse.adam()
    update = jax.jit(lambda E, state, ids, rows, t: rule.update(E, state, *unique(ids, rows), 0.1, t))
    E, state = jnp.asarray(E0), rule.init(jnp.asarray(E0))
    for t, (ids, rows) in enumerate(batches, start=1):
        E, state = update(E, state, ids, rows, t)
    E_ref, m_ref, v_ref = numpy_lazy_adam(E0, batches, 0.1)
    moments = state["moments"]
    assert_trees_close((E, moments[:, 0], moments[:, 1]), (E_ref, m_ref, v_ref), rtol=RTOL)
    np.testing.assert_array_equal(np.asarray(E[9:]), E0[9:])  # never in a batch: bit-identical


def test_lazy_adam_equals_optax_adam_when_every_row_is_present(x64):
    rng = np.random.default_rng(2)
    # every id in every batch (plus 4 repeats): lazy Adam has nothing to skip
    batches = [
        (np.concatenate([np.arange(V), rng.integers(0, V, 4)]), rng.normal(size=(V + 4, D))) for _ in range(STEPS)
    ]
    E_sparse, E_dense, _, _ = run_rule(sparse.adam(), optax.adam(0.1), 0.1, batches)
    assert_trees_close(E_sparse, E_dense, rtol=RTOL)


@pytest.mark.parametrize("name", sorted(sparse.RULES))
def test_rule_touches_only_present_rows_and_ignores_padding(name, x64):
    rng = np.random.default_rng(3)
    E = jnp.asarray(rng.normal(size=(V, D)))
    rule = sparse.RULES[name]()
    state = rule.init(E)
    ids = jnp.asarray([5, 3, 5, 7, 3, 3], jnp.int32)  # 3 distinct ids in 6 slots: 3 padding slots
    rows = jnp.asarray(rng.normal(size=(6, D)))
    update = jax.jit(lambda E, state: rule.update(E, state, *unique(ids, rows), 0.1, 1))
    new_E, new_state = update(E, state)
    untouched = np.setdiff1d(np.arange(V), [3, 5, 7])  # includes row 0 and row V-1
    for before, after in zip(jax.tree.leaves((E, state)), jax.tree.leaves((new_E, new_state))):
        np.testing.assert_array_equal(np.asarray(after)[untouched], np.asarray(before)[untouched])
    assert np.all(np.asarray(new_E)[[3, 5, 7]] != np.asarray(E)[[3, 5, 7]])


# ----------------------------------------------------------------------------- the training step


def dense_reference(cfg, tx, params, batches, keys):
    """The dense path: manual_value_and_grad (dJ/dE scattered to (V, d)) and one optax tx."""

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def step(params, state, batch, key):
        _, grads = manual_value_and_grad(params, batch, cfg, key=key)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for batch, key in zip(batches, keys):
        params, state = step(params, state, batch, key)
    return params


def sparse_run(cfg, dense_tx, rule, lr, params, batches, keys, **kw):
    init, step = sparse.make_sparse_step(cfg, dense_tx, rule, lr, **kw)
    params = copy(params)  # the step donates its inputs
    state = init(params)
    for batch, key in zip(batches, keys):
        params, state, _ = step(params, state, batch, key)
    return params, state


# (rule, config) rows; the rule does not interact with head, features or dropout, so the second
# config runs once (each row compiles two programs)
STEP_CASES = [("sgd", CONFIGS[0]), ("adagrad", CONFIGS[0]), ("adagrad", CONFIGS[1])]


@pytest.mark.parametrize("rule,case", STEP_CASES, ids=[f"{r}-{c[0]}" for r, c in STEP_CASES])
def test_sparse_step_equals_dense_step(rule, case, x64):
    _, cfg, dropout = case
    rng = np.random.default_rng(4)
    params = make_params(cfg)
    batches = [make_batch(cfg, rng) for _ in range(STEPS)]
    keys = list(jax.random.split(jax.random.key(0), STEPS)) if dropout else [None] * STEPS

    # a schedule for E's rate: it is called with the count of steps taken, as optax calls it
    def lr(count):  # float64 under x64, unlike optax schedules (float32)
        return 0.5 * 0.8**count

    make_tx = {"sgd": optax.sgd, "adagrad": optax.adagrad}[rule]
    got, state = sparse_run(cfg, make_tx(lr), rule, lr, params, batches, keys)
    want = dense_reference(cfg, make_tx(lr), params, batches, keys)
    assert_trees_close(got, want, rtol=RTOL)
    assert int(state["count"]) == STEPS
    np.testing.assert_array_equal(np.asarray(got["E"][12:]), np.asarray(params["E"][12:]))  # unused rows


# one jitted lazy-Adam step shared by the tests below (compiling is most of their cost)
ADAM_INIT, ADAM_STEP = sparse.make_sparse_step(CONFIGS[0][1], optax.sgd(0.1), "adam", 0.1)


def test_sparse_step_in_passes_equals_one_pass(x64):
    """The step with its rule run in passes of 4 slots (B n = 12 slots, up to 9 distinct ids, some rows
    frozen so that positions are left out) equals the one-pass step (to rounding, as above)."""
    cfg = CONFIGS[0][1]
    rng = np.random.default_rng(10)
    params = make_params(cfg)
    batches = [make_batch(cfg, rng) for _ in range(STEPS)]
    frozen = np.zeros(cfg.vocab_size, bool)
    frozen[[1, 5]] = True
    runs = [
        sparse_run(cfg, optax.sgd(0.1), "adam", 0.1, params, batches, [None] * STEPS, frozen_rows=frozen, chunk=c)
        for c in (4, None)
    ]
    assert_trees_close(runs[0], runs[1], rtol=RTOL)
    np.testing.assert_array_equal(np.asarray(runs[0][0]["E"])[[1, 5]], np.asarray(params["E"])[[1, 5]])  # frozen


def test_one_step_moves_only_the_batch_rows(x64):
    cfg = CONFIGS[0][1]
    params = make_params(cfg)
    batch = make_batch(cfg, np.random.default_rng(5))
    new, state, _ = ADAM_STEP(copy(params), ADAM_INIT(params), batch, None)
    present = np.unique(batch["windows"])
    for before, after in [(params["E"], new["E"]), (jnp.zeros_like(params["E"]), state["E"]["moments"][:, 0])]:
        changed = np.flatnonzero(np.any(np.asarray(after) != np.asarray(before), axis=1))
        np.testing.assert_array_equal(changed, present)  # all other rows bit-identical


def test_step_compiles_once_and_donates(x64):
    cfg = CONFIGS[0][1]
    rng = np.random.default_rng(7)
    params = make_params(cfg)
    state = ADAM_INIT(params)
    old_E = params["E"]
    for _ in range(2):
        params, state, _ = ADAM_STEP(params, state, make_batch(cfg, rng), None)
        assert old_E.is_deleted()  # donated: XLA updates E in place, no (V, d) copy per step
        old_E = params["E"]
    assert ADAM_STEP._cache_size() == 1  # new batches of the same shapes do not recompile


def test_repeated_word_gets_both_updates(x64):
    cfg = CONFIGS[0][1]
    params = make_params(cfg)
    batch = {"windows": np.array([[4, 9, 4]], np.int32), "labels": np.array([1], np.int32)}
    _, _, (_, rows) = jax.jit(backprop.manual_value_and_row_grads, static_argnums=2)(params, batch, cfg)
    both = rows[0] + rows[2]  # word 4 sits at positions 0 and 2 of the window
    assert not np.allclose(both, rows[0]) and not np.allclose(both, rows[2])
    new, _ = sparse_run(cfg, optax.sgd(0.1), "sgd", 0.1, params, [batch], [None])
    np.testing.assert_allclose(new["E"][4], params["E"][4] - 0.1 * both, rtol=RTOL)


def test_frozen_embeddings_keep_E_and_train_the_rest(x64):
    cfg = CONFIGS[0][1]
    params = make_params(cfg)
    batches = [make_batch(cfg, np.random.default_rng(6))]
    new, state = sparse_run(cfg, optax.sgd(0.1), "adam", 0.1, params, batches, [None], freeze_embeddings=True)
    assert state["E"] == ()
    np.testing.assert_array_equal(np.asarray(new["E"]), np.asarray(params["E"]))
    want = dense_reference(cfg, optax.sgd(0.1), params, batches, [None])
    assert_trees_close(
        {k: v for k, v in new.items() if k != "E"}, {k: v for k, v in want.items() if k != "E"}, rtol=RTOL
    )
