"""One compiled epoch (lax.scan on the device) against train.run_epoch's Python loop, in float64;
the crf head's length buckets (the float64 training comparison is in test_crf_training.py)."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

from jaxbackprop import compiled_epoch, pipeline, rundir, synthetic, train
from jaxbackprop.step import make_step

TINY = dict(helpers.TINY, optimizer="adam", dropout=0.2, word_dropout=0.1)

# the step variants the compiled epoch must reproduce (a literal table, as the sweeps are)
VARIANTS = {
    "manual": dict(grad="manual"),
    "autodiff": dict(grad="autodiff"),
    "flax": dict(grad="autodiff", impl="flax"),
    "sparse-adagrad": dict(sparse=True, optimizer="adagrad", learning_rate=0.1),
    "sparse-adam": dict(sparse=True),
}


@pytest.fixture(scope="module")
def corpus():
    c = synthetic.synthetic_corpus(seed=1, n_train=60, n_dev=10, n_test=10)
    return pipeline.prepare(c["train"], c["dev"], c["test"], synthetic.synthetic_vectors(dim=12), window=3)


def _fresh_params(config, corpus):
    model_cfg, params = rundir.init_run_params(config, corpus)
    return model_cfg, jax.tree.map(lambda x: x.astype(np.float64), params)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_compiled_epoch_equals_run_epoch(corpus, name):
    config = train.configure(**{**TINY, **VARIANTS[name]})
    n = len(corpus.train.windows)
    assert n % config.batch_size, "the last batch should be padded"
    steps = -(-n // config.batch_size)
    epoch = 2  # not the first, so the schedule and the epoch's key are not their defaults
    with jax.enable_x64(True):
        model_cfg, params = _fresh_params(config, corpus)
        opt_state, step = make_step(config, model_cfg, params, steps)
        expected = train.run_epoch(step, params, opt_state, corpus.train, config, epoch)

        # fresh arrays: both the sparse step and the compiled epoch donate theirs
        model_cfg, params = _fresh_params(config, corpus)
        opt_state, epoch_fn = compiled_epoch.make_compiled_epoch(config, model_cfg, params, steps)
        data = compiled_epoch.device_data(corpus.train)
        actual = epoch_fn(params, opt_state, data, compiled_epoch.epoch_key(config.seed, epoch))

    assert_trees_close(actual[:2], expected[:2], rtol=1e-10)
    assert float(actual[2]) == pytest.approx(expected[2], rel=1e-10)
    initial = rundir.init_run_params(config, corpus)[1]
    assert not np.allclose(actual[0]["W"], initial["W"]), "nothing trained"


def test_the_order_is_a_permutation_drawn_from_the_epoch_key():
    orders = [
        np.asarray(compiled_epoch.epoch_order(compiled_epoch.epoch_key(s, e), 1000))
        for s, e in ((0, 1), (0, 2), (1, 1))
    ]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    # another epoch or another seed shuffles differently (equal by chance with probability 3/1000!)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], orders[2])
    again = compiled_epoch.epoch_order(compiled_epoch.epoch_key(0, 1), 1000)
    np.testing.assert_array_equal(
        jax.jit(compiled_epoch.epoch_order, static_argnums=1)(compiled_epoch.epoch_key(0, 1), 1000), again
    )


def test_epoch_batches_match_padded_batches(corpus):
    order = np.random.default_rng(3).permutation(len(corpus.train.windows))
    idx, weights = compiled_epoch.epoch_batches(order, 64)
    data = compiled_epoch.device_data(corpus.train)
    batches = list(pipeline.padded_batches(corpus.train, 64, order))
    assert idx.shape == weights.shape == (len(batches), 64)
    for rows, w, batch in zip(np.asarray(idx), np.asarray(weights), batches):
        np.testing.assert_array_equal(w, batch["weights"])
        for k in compiled_epoch.DATA_KEYS:
            np.testing.assert_array_equal(np.asarray(data[k])[rows], batch[k])


def test_the_progress_hook_reports_every_k_steps(corpus):
    """The compiled epoch calls the host back after every k steps with the number of steps done."""
    config = train.configure(**TINY)
    steps = -(-len(corpus.train.windows) // config.batch_size)
    model_cfg, params = rundir.init_run_params(config, corpus)
    done = []
    opt_state, epoch_fn = compiled_epoch.make_compiled_epoch(
        config, model_cfg, params, steps, progress=(2, lambda i: done.append(int(i)))
    )
    jax.block_until_ready(epoch_fn(params, opt_state, compiled_epoch.device_data(corpus.train), jax.random.key(0)))
    jax.effects_barrier()
    assert steps >= 4 and sorted(done) == list(range(2, steps + 1, 2))


def test_a_bucketed_epoch_takes_the_loops_batches_and_keys(corpus):
    """scan_bucket_epoch feeds step i the batch and key that pipeline.scheduled_batches and
    fold_in(steps_key, i) give the Python loop, interleaving the buckets of the crf head."""
    buckets = pipeline.training_rows(corpus.train, train.configure(head="crf").model)
    sizes = tuple(min(4, pipeline.row_count(r)) for r in buckets)
    steps = pipeline.steps_per_epoch(buckets, sizes)
    key = compiled_epoch.epoch_key(3, 2)

    def fingerprint(batch):  # weighted sums of the ids that tell the batches apart
        w = batch["weights"].astype(jnp.int32)[:, None]
        return jnp.stack([jnp.sum(batch["windows"].sum(axis=-1) * w), jnp.sum(batch["labels"] * w), jnp.sum(w)])

    def step(seen, batch, step_key, i):
        mark = jnp.concatenate([fingerprint(batch), jax.random.key_data(step_key).astype(jnp.int32)])
        return seen.at[i].set(mark), jnp.zeros(())

    seen0 = jnp.zeros((steps, 3 + jax.random.key_data(key).size), jnp.int32)
    data = compiled_epoch.device_data(buckets)
    seen, _ = jax.jit(lambda d, k: compiled_epoch.scan_bucket_epoch(step, seen0, d, k, sizes))(data, key)

    orders, schedule, _ = compiled_epoch.bucket_plan(key, [pipeline.row_count(r) for r in buckets], sizes)
    batches = pipeline.scheduled_batches(buckets, sizes, [np.asarray(o) for o in orders], np.asarray(schedule))
    _, steps_key = compiled_epoch.epoch_keys(key)
    expected = [
        np.concatenate([fingerprint(b), jax.random.key_data(jax.random.fold_in(steps_key, i)).astype(np.int32)])
        for i, b in enumerate(batches)
    ]
    switches = np.count_nonzero(np.diff(np.asarray(schedule)))
    assert len(buckets) > 1 and switches > len(buckets) - 1, f"not interleaved: {np.asarray(schedule)}"
    np.testing.assert_array_equal(np.asarray(seen), np.stack(expected))
