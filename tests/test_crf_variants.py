"""The crf head through the other ways to train: the flax module (``--impl flax``) and rows-only
embedding updates (``--sparse``), each against the pure dense step it replaces (float64), and
sweeps, whose vmapped members equal the runs they stand for."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close

from jaxbackprop import buckets, compiled_epoch, files, model, pipeline, rundir, sparse, sweep, sweep_group, train
from jaxbackprop.backprop import manual_value_and_grad
from jaxbackprop.step import make_step

CRF = dict(helpers.TINY, head="crf", batch_size=128)
SENTENCES_PER_STEP = 12
STEPS = 17  # ceil(200 / 12): the last batch is padded with weight-0 sentences
RTOL = 1e-10


@pytest.fixture(scope="module")
def corpus():
    return helpers.tiny_corpus()


def float64_params(config, corpus):
    model_cfg, params = rundir.init_run_params(config, corpus)
    return model_cfg, jax.tree.map(lambda x: x.astype(np.float64), params)


def one_epoch(config, corpus):
    """The parameters after an epoch of :func:`jaxbackprop.step.make_step` (the step a run compiles into
    its epoch) over the training sentences in a shuffled order, from float64 initial parameters."""
    model_cfg, params = float64_params(config, corpus)
    opt_state, step = make_step(config, model_cfg, params, STEPS)
    rows = buckets.sentence_rows(corpus.train)
    order = np.random.default_rng(0).permutation(len(rows["mask"]))
    batches = list(pipeline.padded_batches(rows, SENTENCES_PER_STEP, order))
    assert len(batches) == STEPS and batches[-1]["weights"].min() == 0
    for i, batch in enumerate(batches):
        params, opt_state, J = step(params, opt_state, batch, jax.random.key(i))
        assert np.isfinite(J)
    return params


# ----------------------------------------------------------------------------- --impl flax


def test_flax_crf_epoch_equals_the_pure_epoch(corpus):
    """An epoch (adam, dropout, word dropout) of the flax module lands on the pure model's parameters."""
    base = {**CRF, "optimizer": "adam", "dropout": 0.2, "word_dropout": 0.1, "grad": "autodiff"}
    with jax.enable_x64(True):
        flax_params = one_epoch(train.configure(**base, impl="flax"), corpus)
        pure_params = one_epoch(train.configure(**base, impl="pure"), corpus)
    assert_trees_close(flax_params, pure_params, rtol=RTOL)
    assert np.abs(flax_params["T"]).max() > 0, "the transitions did not train"


@pytest.mark.parametrize(
    "variant", [dict(impl="flax", grad="autodiff"), dict(sparse=True, grad="manual")], ids=["flax", "sparse"]
)
def test_a_crf_run_trains_and_evaluates(corpus, tmp_path, variant):
    config = train.configure(**{**CRF, "epochs": 1, **variant})
    summary = train.train_and_evaluate(config, corpus, tmp_path, progress=False, log=lambda *_: None)
    assert 0 <= summary["dev_f1"] <= 1 and 0 <= summary["test_f1"] <= 1
    loaded_config, model_cfg, _, tags, best = rundir.load_run(tmp_path)
    assert model_cfg.head == "crf" and all(getattr(loaded_config, k) == v for k, v in variant.items())
    assert best["T"].shape == (len(tags), len(tags)) and np.abs(best["T"]).max() > 0
    assert np.isfinite(files.read_jsonl(tmp_path / "metrics.jsonl")[0]["train_loss"])


# ----------------------------------------------------------------------------- --sparse

V, USED_WORDS = 30, 20  # real tokens use word ids < 20; padding tokens use the ids 20 .. 29 only
CFG = model.ModelConfig(
    vocab_size=V,
    embed_dim=4,
    window=3,
    hidden_dim=6,
    num_classes=4,
    activation="tanh",
    head="crf",
    l2=0.1,
    dropout=0.2,
    feature_vocab_size=5,
    feature_dim=2,
)


def sentence_batch(seed, lengths, L=5, *, words=(0, USED_WORDS)):
    """Padded sentences of ``lengths``: real tokens' windows over ``words``, padding over ids >= USED_WORDS."""
    rng = np.random.default_rng(seed)
    S, n = len(lengths), CFG.window
    mask = np.arange(L)[None, :] < np.asarray(lengths)[:, None]
    windows = rng.integers(*words, (S, L, n), dtype=np.int32)
    windows[~mask] = rng.integers(USED_WORDS, V, (int((~mask).sum()), n))
    return {
        "windows": windows,
        "features": rng.integers(0, CFG.feature_vocab_size, (S, L, CFG.feature_width), dtype=np.int32),
        "labels": rng.integers(0, CFG.num_classes, (S, L), dtype=np.int32),
        "mask": mask,
        "weights": np.where(np.arange(S) == S - 1, 0.0, 1.0),  # the last sentence is weight-0 padding
    }


def test_a_sparse_sgd_step_on_sentences_equals_the_dense_step(x64):
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(0.0, 0.5, s)) for k, s in model.param_shapes(CFG).items()}
    batch, key, lr = sentence_batch(1, [5, 3, 0, 1, 4]), jax.random.key(3), 0.3
    init, step = sparse.make_sparse_step(CFG, optax.sgd(lr), "sgd", lr, donate=False)
    got, state, J = step(params, init(params), batch, key)

    J_dense, grads = manual_value_and_grad(params, batch, CFG, key=key)
    want = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    assert_trees_close((J, got), (J_dense, want), rtol=RTOL)
    assert all(np.any(got[k] != params[k]) for k in ("T", "start", "end")), "T, start, end get dense updates"
    # rows no real token of a weighted sentence names stay bit-identical: those of padding tokens too
    named = np.unique(batch["windows"][batch["mask"] & (batch["weights"] != 0)[:, None]])
    changed = np.flatnonzero(np.any(np.asarray(got["E"]) != np.asarray(params["E"]), axis=1))
    np.testing.assert_array_equal(changed, named)
    assert named.max() < USED_WORDS


def test_lazy_adam_does_not_touch_the_rows_of_padding_tokens(x64):
    """A row with momentum moves under lazy Adam whenever its id is counted, even with a zero gradient:
    the second batch names rows of the first only through padding tokens and a weight-0 sentence."""
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(0.0, 0.5, s)) for k, s in model.param_shapes(CFG).items()}
    init, step = sparse.make_sparse_step(CFG, optax.sgd(0.1), "adam", 0.1, donate=False)
    first = sentence_batch(1, [5, 5, 5], words=(USED_WORDS, V))  # every row 20 .. 29 gains momentum
    second = sentence_batch(2, [2, 0, 4], words=(0, USED_WORDS))  # real tokens: rows < 20
    params, state, _ = step(params, init(params), first, None)
    assert np.all(np.asarray(state["E"]["moments"][USED_WORDS:]) != 0)
    new, new_state, _ = step(params, state, second, None)
    for before, after in [(params["E"], new["E"]), (state["E"]["moments"], new_state["E"]["moments"])]:
        np.testing.assert_array_equal(np.asarray(after)[USED_WORDS:], np.asarray(before)[USED_WORDS:])
    assert np.any(np.asarray(new["E"][:USED_WORDS]) != np.asarray(params["E"][:USED_WORDS]))


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_a_sparse_crf_epoch_equals_the_dense_epoch(corpus, optimizer):
    """Through the run's own step (word dropout, dropout, a padded last batch): rows-only sgd and
    adagrad are the dense optax update."""
    base = {**CRF, "optimizer": optimizer, "dropout": 0.2, "word_dropout": 0.1, "grad": "manual"}
    with jax.enable_x64(True):
        rows_only = one_epoch(train.configure(**base, sparse=True), corpus)
        dense = one_epoch(train.configure(**base, sparse=False), corpus)
    assert_trees_close(rows_only, dense, rtol=RTOL)


# ----------------------------------------------------------------------------- sweeps

SWEEP_BASE = {**CRF, "optimizer": "adam", "schedule": "constant", "dropout": 0.2, "word_dropout": 0.1}
SWEEP_TABLE = [{"learning_rate": 1e-2}, {"learning_rate": 3e-3, "l2": 1e-2, "seed": 3}]


def test_a_crf_sweep_member_equals_that_member_alone(corpus):
    """Two crf members vmapped in one program: each equals its own single-member group and its run's
    compiled epoch (float32 round-off apart), and is evaluated on the dev sentences."""
    configs = [sweep.configure(row, train.configure(**SWEEP_BASE)) for row in SWEEP_TABLE]
    group = sweep_group.train_group(configs, corpus, log=lambda *_: None)
    assert len(sweep_group.group_indices(configs)) == 1
    steps = configs[0].epochs * sweep_group.training_data(sweep_group.group_key(configs[0], corpus), corpus)[2]
    rtol = helpers.float32_tolerance(steps, 1.0, k=4, worst_case=True)
    for k, config in enumerate(configs):
        member = jax.tree.map(lambda x, k=k: x[k], group.params)
        alone = sweep_group.train_group([config], corpus, log=lambda *_: None)
        assert_trees_close(member, jax.tree.map(lambda x: x[0], alone.params), rtol=rtol)
        # the run's own epoch: L2 inside the model rather than added by the sweep, the same order and keys
        model_cfg, params = rundir.init_run_params(config, corpus)
        opt_state, epoch = compiled_epoch.compile_epoch(config, model_cfg, params, steps // config.epochs, corpus.train)
        for e in range(1, config.epochs + 1):
            params, opt_state, loss = epoch(params, opt_state, compiled_epoch.epoch_key(config.seed, e))
        assert_trees_close(member, params, rtol=rtol)
        assert group.curves[k][-1]["train_loss"] == pytest.approx(float(loss), rel=rtol)
        curve = group.curves[k]
        assert [r["epoch"] for r in curve] == [1, 2] and all(0 <= r["dev_f1"] <= 1 for r in curve)
        assert np.isfinite(curve[-1]["dev_loss"]) and curve[-1]["train_loss"] < curve[0]["train_loss"]
    assert not np.allclose(group.params["T"][0], group.params["T"][1])
