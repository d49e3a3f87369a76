"""Evaluation on the device: equal to the host path it replaced, member by member under vmap, and blind to padding."""

import dataclasses
import functools

import helpers
import jax
import numpy as np
import pytest
from helpers import float32_tolerance
from test_decode import viterbi_reference

from jaxbackprop import decode, evaluate, metrics, model, pipeline, synthetic, train

CHUNK = 64  # small, so the dev split spans several chunks and ends in a partial one


@pytest.fixture(scope="module")
def corpus():
    c = synthetic.synthetic_corpus(seed=3, n_train=60, n_dev=40, n_test=10)
    return pipeline.prepare(c["train"], c["dev"], c["test"], synthetic.synthetic_vectors(dim=12), window=3)


@pytest.fixture(scope="module")
def cfg(corpus):
    # per-word features on, so their device copy and chunking are exercised too; l2 > 0 for the penalty
    return pipeline.model_config(train.configure(**{**helpers.TINY, "l2": 0.01}), corpus)


def member_params(cfg, corpus, seed):
    """Xavier weights over the (unit-scale) synthetic vectors: logits of order 1, so no near-ties in argmax."""
    return model.init_params(jax.random.key(seed), cfg, embeddings=corpus.embeddings)


def host_log_probs(params, ds, cfg, batch_size=50):
    """The previous path: numpy batches copied to the device one by one, log-probabilities and losses back."""
    log_softmax = jax.jit(lambda p, w, f: jax.nn.log_softmax(model.forward(p, w, cfg, f), axis=-1))
    out, losses = [], []
    for batch in pipeline.padded_batches(ds, batch_size):
        batch = pipeline.model_batch(batch, cfg)
        real = batch["weights"] > 0
        out.append(np.asarray(log_softmax(params, batch["windows"], batch.get("features")))[real])
        losses.append(np.asarray(model.per_example_loss(params, batch, cfg))[real])
    return np.concatenate(out), np.concatenate(losses)


def host_viterbi(log_probs, lengths, tags):
    """Viterbi tag ids (N,) of a flat run of sentences, sentence by sentence in float64 numpy."""
    start, transitions = decode.iob2_constraints(tags)
    ends = np.cumsum(lengths)
    paths = [viterbi_reference(log_probs[e - n : e], start, transitions) for e, n in zip(ends, lengths) if n]
    return np.concatenate(paths)


def row_tolerance(log_probs, cfg):
    """How far one float32 log-probability may move in another batch shape: (N,), one bound per row.

    It comes from dot products of input_dim and H terms, so it is off by about
    float32_tolerance(input_dim + H, scale) with scale its row's largest magnitude.
    """
    return float32_tolerance(cfg.input_dim + cfg.hidden_dim, 1.0) * np.abs(log_probs).max(axis=1)


def loss_tolerance(log_probs, nll, cfg):
    """How far two float32 evaluations of sum_i nll_i (in other batch shapes, other orders) may lie apart:
    every row's own error (worst case, added up) plus the rounding of an N-term sum of magnitude sum|nll|."""
    return float(row_tolerance(log_probs, cfg).sum()) + float32_tolerance(len(nll), float(np.abs(nll).sum()))


def test_device_evaluation_equals_the_host_path(corpus, cfg):
    params, ds, tags = member_params(cfg, corpus, 0), corpus.dev, corpus.tags
    log_probs, nll = host_log_probs(params, ds, cfg)
    argmax_ids = np.argmax(log_probs, axis=1)
    viterbi_ids = host_viterbi(log_probs, ds.sentence_lengths, tags)
    assert (argmax_ids != viterbi_ids).any(), "the test should see the decoders disagree somewhere"

    device_log_probs, device_loss = evaluate.predict_log_probs(params, ds, cfg, batch_size=CHUNK)
    assert device_log_probs.shape == log_probs.shape
    assert (np.abs(device_log_probs - log_probs) <= row_tolerance(log_probs, cfg)[:, None]).all()
    assert abs(device_loss - nll.sum()) <= loss_tolerance(log_probs, nll, cfg)
    for decoder, expected in (("argmax", argmax_ids), ("viterbi", viterbi_ids)):
        ids, loss_sum = evaluate.predict_labels(params, ds, tags, cfg, decoder)
        # continuous random logits of order 1: a near-tie (a gap under ~1e-5) between tags or paths is improbable
        np.testing.assert_array_equal(ids, expected, err_msg=decoder)
        assert abs(loss_sum - nll.sum()) <= loss_tolerance(log_probs, nll, cfg)

    got = evaluate.evaluate(params, ds, tags, cfg)
    tag_arr = np.asarray(tags)
    true, pred = (metrics.split_by_lengths(list(tag_arr[i]), ds.sentence_lengths) for i in (ds.labels, viterbi_ids))
    want = metrics.entity_scores(true, pred)
    assert {k: got[k] for k in ("f1", "precision", "recall", "per_type")} == {
        k: want[k] for k in ("f1", "precision", "recall", "per_type")
    }
    assert got["accuracy"] == metrics.token_accuracy(true, pred)
    assert got["argmax_f1"] == evaluate.evaluate(params, ds, tags, cfg, "argmax")["f1"]
    expected_loss = nll.mean() + float(model.l2_penalty(params, cfg))
    assert abs(got["loss"] - expected_loss) <= loss_tolerance(log_probs, nll, cfg) / len(nll) + helpers.EPS32


def test_vmapped_members_equal_each_alone(corpus, cfg):
    members = [member_params(cfg, corpus, seed) for seed in (1, 2, 3)]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *members)
    ev = evaluate.eval_data(corpus.dev, cfg, multiple=CHUNK)
    scores = evaluate.iob2_scores(corpus.tags)
    run = functools.partial(evaluate.predict, model_cfg=cfg, chunk=CHUNK)
    together = jax.device_get(jax.vmap(run, in_axes=(0, None, None, None))(stacked, ev, *scores))
    for k, params in enumerate(members):
        alone = jax.device_get(run(params, ev, *scores))
        np.testing.assert_array_equal(together.viterbi[k], alone.viterbi, err_msg=f"member {k}")
        np.testing.assert_array_equal(together.argmax[k], alone.argmax, err_msg=f"member {k}")
        # the same sum of N cross-entropies, batched differently: float32_tolerance(N, sum) apart
        assert abs(together.loss_sum[k] - alone.loss_sum) <= float32_tolerance(len(ev.weights), float(alone.loss_sum))
    # a member scored on the host equals evaluate's answer for it
    penalty = float(model.l2_penalty(members[1], cfg))
    row = evaluate.scores(
        together.viterbi[1], together.argmax[1], together.loss_sum[1], corpus.dev, corpus.tags, penalty
    )
    direct = evaluate.evaluate(members[1], corpus.dev, corpus.tags, cfg)
    assert {k: v for k, v in row.items() if k != "loss"} == {k: v for k, v in direct.items() if k != "loss"}
    n = len(corpus.dev.windows)  # the mean of the same loss sum as above, plus the same penalty
    assert abs(row["loss"] - direct["loss"]) <= float32_tolerance(n, float(together.loss_sum[1])) / n + helpers.EPS32


def test_padding_never_leaks(corpus, cfg):
    params, ds, tags = member_params(cfg, corpus, 4), corpus.dev, corpus.tags
    n = len(ds.windows)
    assert n % CHUNK, "the split should end in a partial chunk"
    # empty sentences at the start, the middle and the end hold no tokens and change no tag
    lengths = ds.sentence_lengths
    gappy = ds._replace(sentence_lengths=np.insert(lengths, [0, len(lengths) // 2, len(lengths)], 0))
    scores = evaluate.iob2_scores(tags)
    results = [
        jax.device_get(evaluate.predict(params, evaluate.eval_data(d, cfg, multiple), *scores, model_cfg=cfg, chunk=c))
        for d, multiple, c in ((ds, 1024, 1024), (ds, CHUNK, CHUNK), (gappy, CHUNK, 48), (gappy, 1, CHUNK))
    ]
    reference = results[0]
    for pred in results:
        for ids, want in ((pred.viterbi, reference.viterbi), (pred.argmax, reference.argmax)):
            assert (ids[n:] == -1).all(), "a padding row got a tag"
            np.testing.assert_array_equal(ids[:n], want[:n])
        # sums of the same N terms in other chunkings (the padding rows weigh 0)
        assert abs(pred.loss_sum - reference.loss_sum) <= float32_tolerance(n, float(reference.loss_sum))
    with_gaps, plain = evaluate.evaluate(params, gappy, tags, cfg), evaluate.evaluate(params, ds, tags, cfg)
    assert with_gaps["f1"] == plain["f1"] and with_gaps["accuracy"] == plain["accuracy"]


def test_unlabelled_text_is_tagged_with_zero_loss(corpus, cfg):
    params, ds = member_params(cfg, corpus, 5), corpus.dev
    ids, _ = evaluate.predict_labels(params, ds, corpus.tags, cfg)
    unlabelled_ids, loss = evaluate.predict_labels(params, ds._replace(labels=None), corpus.tags, cfg)
    np.testing.assert_array_equal(unlabelled_ids, ids)
    assert loss == 0.0


def test_evaluate_keeps_the_split_on_the_device_and_compiles_once(corpus, cfg):
    params, ds = member_params(cfg, corpus, 6), corpus.test
    first = evaluate.evaluate(params, ds, corpus.tags, cfg)
    size = evaluate.predict._cache_size()
    assert evaluate.cached_eval_data(ds, cfg) is evaluate.cached_eval_data(ds, cfg)
    assert evaluate.cached_eval_data(ds._replace(), cfg) is not evaluate.cached_eval_data(ds, cfg)
    assert evaluate.evaluate(params, ds, corpus.tags, cfg) == first
    assert evaluate.predict._cache_size() == size, "a second evaluation of the same split recompiled"


def test_evaluate_rejects_bad_input(corpus, cfg):
    params = member_params(cfg, corpus, 0)
    with pytest.raises(ValueError, match="decode method must be one of"):
        evaluate.evaluate(params, corpus.dev, corpus.tags, cfg, "beam")
    score_cfg = dataclasses.replace(cfg, head="score")
    with pytest.raises(ValueError, match="head must be 'softmax'"):
        evaluate.predict_labels(model.init_params(jax.random.key(0), score_cfg), corpus.dev, corpus.tags, score_cfg)
    with pytest.raises(ValueError, match="out of range"):
        bad = corpus.dev._replace(windows=corpus.dev.windows + cfg.vocab_size)
        evaluate.evaluate(params, bad, corpus.tags, cfg)
