"""Training the crf head: sentence batches, the compiled epoch against the loop, runs, resume, the CLI."""

import itertools
import json

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

from jaxbackprop import (
    buckets,
    checkpoint,
    cli,
    compiled_epoch,
    crf_eval,
    data,
    files,
    model,
    pipeline,
    rundir,
    synthetic,
    train,
)
from jaxbackprop import evaluate as evaluate_module
from jaxbackprop.evaluate import evaluate, predict_labels
from jaxbackprop.step import drop_words, make_step

# batch_size counts tokens, as whole sentences: 128 tokens are 12 of the 200 training sentences (10.2
# tokens each); they fall in two length buckets, 35 of at most 8 tokens (3 steps, the last padded) and
# 165 of 9-16 tokens (14 steps, the last padded), so an epoch is 17 steps
CRF = dict(helpers.TINY, head="crf", batch_size=128)
SENTENCES_PER_STEP, STEPS = (12, 12), 17


@pytest.fixture(scope="module")
def corpus():
    return helpers.tiny_corpus()


run = helpers.quiet_run


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """A 3-epoch crf run: its directory and summary."""
    run_dir = tmp_path_factory.mktemp("crf") / "full"
    return run_dir, run(train.configure(**{**CRF, "epochs": 3}), corpus, run_dir)


# ----------------------------------------------------------------------------- data


def test_sentence_rows_hold_every_token_in_order(corpus):
    ds = corpus.dev
    rows = buckets.sentence_rows(ds)
    S, L, n = rows["windows"].shape
    assert S == len(ds.sentence_lengths) and L % buckets.SENTENCE_LENGTH_MULTIPLE == 0
    assert L >= ds.sentence_lengths.max() and n == ds.windows.shape[1]
    np.testing.assert_array_equal(rows["mask"].sum(axis=1), ds.sentence_lengths)
    for k in ("windows", "features", "labels"):
        np.testing.assert_array_equal(rows[k][rows["mask"]], getattr(ds, k))
        assert rows[k].dtype == np.int32 and not rows[k][~rows["mask"]].any()
    padded = buckets.sentence_rows(ds, length_multiple=16, sentence_multiple=64)
    assert padded["windows"].shape[:2] == (64, 16 * -(-ds.sentence_lengths.max() // 16))
    assert not padded["mask"][S:].any()


@pytest.mark.parametrize("seed", range(4))
def test_length_buckets_pad_the_fewest_slots(seed):
    """The dynamic programme against every choice of at most 3 padded lengths among the multiples of 8."""
    lengths = np.random.default_rng(seed).geometric(0.08, size=300)
    bounds = buckets.length_buckets(lengths, max_buckets=3)
    top = -(-lengths.max() // 8) * 8
    assert len(bounds) <= 3 and bounds[-1] == top and all(b % 8 == 0 for b in bounds)
    groups = buckets.bucket_sentences(lengths, bounds)
    assert all(len(s) for s in groups), "an empty bucket"
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(len(lengths)))

    def slots(bounds):
        return sum(len(s) * b for s, b in zip(buckets.bucket_sentences(lengths, bounds), bounds))

    choices = [(*c, top) for k in range(3) for c in itertools.combinations(range(8, top, 8), k)]
    assert slots(bounds) == min(slots(c) for c in choices)
    assert buckets.length_buckets(lengths, max_buckets=1) == (top,)


def test_sentence_buckets_hold_every_sentence_once_padded_to_its_bucket(corpus):
    ds = corpus.train
    rows = pipeline.training_rows(ds, train.configure(**CRF).model)
    assert isinstance(rows, tuple) and len(rows) > 1
    lengths = [r["mask"].sum(axis=1) for r in rows]
    for r, n in zip(rows, lengths):
        L = r["mask"].shape[1]
        assert L % buckets.SENTENCE_LENGTH_MULTIPLE == 0 and L - buckets.SENTENCE_LENGTH_MULTIPLE < n.max() <= L
    sentences = buckets.bucket_sentences(ds.sentence_lengths, buckets.length_buckets(ds.sentence_lengths))
    for r, s in zip(rows, sentences):  # a bucket's tokens are its sentences', in order
        tokens = buckets.sentence_tokens(ds.sentence_lengths, s)
        for k in ("windows", "features", "labels"):
            np.testing.assert_array_equal(r[k][r["mask"]], getattr(ds, k)[tokens])
    assert sorted(np.concatenate(lengths).tolist()) == sorted(ds.sentence_lengths.tolist())
    assert buckets.padding_waste(rows) < buckets.padding_waste(buckets.sentence_rows(ds))


def test_the_bucket_plan_takes_every_batch_once_from_the_epoch_key():
    counts, sizes = (50, 7, 20), (8, 3, 20)
    steps = [7, 3, 1]
    orders, schedule, position = compiled_epoch.bucket_plan(compiled_epoch.epoch_key(0, 1), counts, sizes)
    for b, (order, n) in enumerate(zip(orders, counts)):
        np.testing.assert_array_equal(np.sort(np.asarray(order)), np.arange(n))
        np.testing.assert_array_equal(np.asarray(position)[np.asarray(schedule) == b], np.arange(steps[b]))
    assert np.bincount(np.asarray(schedule)).tolist() == steps
    later = compiled_epoch.bucket_plan(compiled_epoch.epoch_key(0, 2), counts, sizes)
    assert not np.array_equal(later[1], schedule) or not np.array_equal(later[0][0], orders[0])
    jitted = jax.jit(compiled_epoch.bucket_plan, static_argnums=(1, 2))(compiled_epoch.epoch_key(0, 1), counts, sizes)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves((orders, schedule, position))):
        np.testing.assert_array_equal(a, b)


def test_a_batch_of_sentences_holds_about_batch_size_tokens():
    mask = np.zeros((6, 8), bool)
    mask[:4, :5] = True  # four sentences of 5 tokens, two empty ones (which do not count)
    assert pipeline.rows_per_batch(20, {"mask": mask}) == 4
    # length buckets share the split's count: a sentence weighs the same in every step
    assert pipeline.rows_per_batch(20, ({"mask": mask}, {"mask": np.ones((4, 10), bool)})) == (3, 3)
    assert pipeline.rows_per_batch(2, {"mask": mask}) == 1  # at least one sentence
    assert pipeline.rows_per_batch(20, {"windows": np.zeros((9, 3))}) == 20  # windows: one per token


def test_word_dropout_reaches_sentence_windows():
    windows = jnp.arange(2 * 5 * 3, dtype=jnp.int32).reshape(2, 5, 3)
    dropped = drop_words(jax.random.key(0), windows, 0.5)
    assert dropped.shape == windows.shape
    changed = np.asarray(dropped != windows)
    assert changed.any() and not changed[np.asarray(windows) < 4].any()  # reserved ids stay


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_compiled_epoch_equals_run_epoch(corpus, grad):
    config = train.configure(**{**CRF, "optimizer": "adam", "dropout": 0.2, "word_dropout": 0.1, "grad": grad})
    rows = pipeline.training_rows(corpus.train, config.model)
    assert pipeline.rows_per_batch(config.batch_size, rows) == SENTENCES_PER_STEP
    assert pipeline.steps_per_epoch(rows, SENTENCES_PER_STEP) == STEPS
    assert pipeline.row_count(rows[0]) % SENTENCES_PER_STEP[0], "a last batch should be padded"
    steps = STEPS
    epoch = 2
    with jax.enable_x64(True):

        def fresh():  # fresh arrays: the compiled epoch donates its own
            model_cfg, params = rundir.init_run_params(config, corpus)
            return model_cfg, jax.tree.map(lambda x: x.astype(np.float64), params)

        model_cfg, params = fresh()
        opt_state, step = make_step(config, model_cfg, params, steps)
        expected = train.run_epoch(step, params, opt_state, corpus.train, config, epoch)

        model_cfg, params = fresh()
        opt_state, compiled = compiled_epoch.compile_epoch(config, model_cfg, params, steps, corpus.train)
        actual = train.run_epoch(compiled, params, opt_state, corpus.train, config, epoch)
    assert_trees_close(actual[:2], expected[:2], rtol=1e-10)
    assert actual[2] == pytest.approx(expected[2], rel=1e-10)
    assert not np.allclose(actual[0]["T"], 0), "the transitions did not train"


def test_manual_and_autodiff_train_to_the_same_parameters(corpus):
    def after_epoch(grad):
        config = train.configure(**{**CRF, "dropout": 0.2, "word_dropout": 0.1, "grad": grad})
        model_cfg, params = rundir.init_run_params(config, corpus)
        params = jax.tree.map(lambda x: x.astype(np.float64), params)
        opt_state, compiled = compiled_epoch.compile_epoch(config, model_cfg, params, STEPS, corpus.train)
        return compiled(params, opt_state, compiled_epoch.epoch_key(0, 1))[0]

    with jax.enable_x64(True):
        assert_trees_close(after_epoch("autodiff"), after_epoch("manual"), rtol=1e-10)


def test_a_crf_run_learns_and_its_files_hold_the_transitions(corpus, finished):
    run_dir, summary = finished
    config = train.configure(**{**CRF, "epochs": 3})
    model_cfg, fresh = rundir.init_run_params(config, corpus)
    before = evaluate(fresh, corpus.dev, corpus.tags, model_cfg)["f1"]
    assert summary["dev_f1"] > before and 0 < summary["test_f1"] <= 1
    conf = json.loads((run_dir / "config.json").read_text())
    assert conf["model"]["head"] == "crf" and conf["train"]["model"]["head"] == "crf"
    loaded_config, loaded_cfg, _, tags, best = rundir.load_run(run_dir)
    assert loaded_config.model.head == loaded_cfg.head == "crf"
    C = len(tags)
    assert best["T"].shape == (C, C) and best["start"].shape == best["end"].shape == (C,)
    assert np.abs(best["T"]).max() > 0
    # the summary's test F1 is the best parameters' evaluation, decoded under the learned scores
    test = evaluate(best, corpus.test, tags, loaded_cfg, "viterbi")
    assert test["f1"] == summary["test_f1"] and test["argmax_f1"] == summary["test_argmax_f1"]
    rows = files.read_jsonl(run_dir / "metrics.jsonl")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_resuming_a_crf_run_equals_the_longer_run(corpus, finished, tmp_path):
    run(train.configure(**{**CRF, "epochs": 2}), corpus, tmp_path)
    run(train.configure(**{**CRF, "epochs": 3}), corpus, tmp_path, resume=True)
    config = train.configure(**CRF)
    model_cfg, params = rundir.init_run_params(config, corpus)
    template = (params, make_step(config, model_cfg, params, steps_per_epoch=STEPS)[0])
    full, meta_full = checkpoint.load_tree(finished[0] / "checkpoint.npz", template)
    parts, meta_parts = checkpoint.load_tree(tmp_path / "checkpoint.npz", template)
    assert meta_full["epoch"] == meta_parts["epoch"] == 3
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(parts)):  # params and optimizer state
        np.testing.assert_array_equal(a, b)
    assert [r["dev_f1"] for r in meta_full["history"]] == [r["dev_f1"] for r in meta_parts["history"]]


def test_resuming_with_the_other_head_is_refused(corpus, finished):
    with pytest.raises(rundir.RunDirError, match="head: run has 'crf', given 'softmax'"):
        run(train.configure(**{**CRF, "head": "softmax", "epochs": 3}), corpus, finished[0], resume=True)


# ----------------------------------------------------------------------------- evaluation


def test_a_fresh_crf_is_the_per_token_softmax(corpus):
    """T = start = end = 0: the sentence's distribution factorises over its tokens, so the sentence NLL
    is the sum of the tokens' cross-entropies and both decoders pick the softmax head's tags."""
    softmax_cfg, params = rundir.init_run_params(train.configure(**helpers.TINY), corpus)
    crf_cfg, crf_params = rundir.init_run_params(train.configure(**CRF), corpus)
    crf_params = {**params, **{k: crf_params[k] for k in ("T", "start", "end")}}
    assert not any(np.asarray(crf_params[k]).any() for k in ("T", "start", "end"))
    rows = buckets.sentence_rows(corpus.dev)
    batch = pipeline.model_batch(rows, crf_cfg)
    per_sentence = model.per_example_loss(crf_params, batch, crf_cfg)
    windows = pipeline.model_batch(pipeline.training_rows(corpus.dev, softmax_cfg), softmax_cfg)
    per_token = model.per_example_loss(params, windows, softmax_cfg)
    np.testing.assert_allclose(float(jnp.sum(per_sentence)), float(jnp.sum(per_token)), rtol=1e-5)
    for decoder in ("viterbi", "argmax"):
        crf_ids, crf_loss = predict_labels(crf_params, corpus.dev, corpus.tags, crf_cfg, decoder)
        softmax_ids, softmax_loss = predict_labels(params, corpus.dev, corpus.tags, softmax_cfg, decoder)
        np.testing.assert_array_equal(crf_ids, softmax_ids)
        assert crf_loss == pytest.approx(softmax_loss, rel=1e-5)
    crf_scores = evaluate(crf_params, corpus.dev, corpus.tags, crf_cfg)
    softmax_scores = evaluate(params, corpus.dev, corpus.tags, softmax_cfg)
    assert crf_scores["f1"] == softmax_scores["f1"]
    # the crf loss is a mean over sentences, the softmax loss over tokens
    tokens_per_sentence = len(corpus.dev.windows) / len(corpus.dev.sentence_lengths)
    assert crf_scores["loss"] == pytest.approx(softmax_scores["loss"] * tokens_per_sentence, rel=1e-5)


def test_bucketed_evaluation_equals_one_padded_grid(corpus):
    """Length buckets change only the padding: the same tags by both decoders and the same loss."""
    model_cfg, params = rundir.init_run_params(train.configure(**CRF), corpus)
    keys = jax.random.split(jax.random.key(5), 3)
    for k, name in zip(keys, ("T", "start", "end")):  # learned-looking scores, so viterbi differs from argmax
        params[name] = jax.random.normal(k, params[name].shape)
    constraints = evaluate_module.iob2_scores(corpus.tags)
    bucketed, single = (
        crf_eval.predict_sentences(
            params, crf_eval.sentence_eval_data(corpus.test, model_cfg, **kw), *constraints, model_cfg=model_cfg
        )
        for kw in ({}, {"max_buckets": 1})
    )
    assert len(crf_eval.sentence_eval_data(corpus.test, model_cfg).mask) > 1
    np.testing.assert_array_equal(bucketed.viterbi, single.viterbi)
    np.testing.assert_array_equal(bucketed.argmax, single.argmax)
    assert not np.array_equal(bucketed.viterbi, bucketed.argmax)
    assert float(bucketed.loss_sum) == pytest.approx(float(single.loss_sum), rel=1e-5)


def test_cli_trains_evaluates_and_predicts_with_the_crf_head(tmp_path, capsys):
    c = synthetic.synthetic_corpus(seed=2, n_train=150, n_dev=30, n_test=30)
    for split in ("train", "dev", "test"):
        data.write_conll(c[split], tmp_path / f"{split}.txt")
    run_dir = tmp_path / "run"
    files_args = [f"--{split}={tmp_path / f'{split}.txt'}" for split in ("train", "dev", "test")]
    options = "--head crf --batch-size 128 --epochs 1 --hidden-dim 8 --window 3 --no-progress".split()
    assert cli.main(["train", *files_args, "--out", str(run_dir), *options]) == 0
    assert "best dev F1" in capsys.readouterr().out
    assert json.loads((run_dir / "config.json").read_text())["model"]["head"] == "crf"
    for decoder in ("viterbi", "argmax"):
        args = ["evaluate", "--run", str(run_dir), "--data", str(tmp_path / "test.txt"), "--decode", decoder]
        assert cli.main(args) == 0
        assert f"{decoder} decoding" in capsys.readouterr().out
    (tmp_path / "raw.txt").write_text("Mr. Smith went to Paris .\n\nshares of Acme rose\n")
    assert cli.main(["predict", "--run", str(run_dir), "--input", str(tmp_path / "raw.txt")]) == 0
    tagged = [line.split() for line in capsys.readouterr().out.splitlines() if line]
    assert [t[0] for t in tagged] == "Mr. Smith went to Paris . shares of Acme rose".split()
    tags = set(json.loads((run_dir / "config.json").read_text())["tags"])
    assert all(len(t) == 2 and t[1] in tags for t in tagged)


# ----------------------------------------------------------------------------- what is refused


def test_the_score_head_cannot_be_trained_on_tags():
    with pytest.raises(ValueError, match="head must be one of"):
        train.configure(head="score")
