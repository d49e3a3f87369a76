"""embeddings_mode="pretrained_frozen": the rows of E seeded from pretrained vectors keep them bit for bit,
every other row (words without a vector, the reserved ids) trains -- in the compiled epoch, the step loop,
the rows-only (--sparse) step, a sweep's group, and across a resume."""

import helpers
import jax
import numpy as np
import pytest
from helpers import assert_trees_close, float32_tolerance

from jaxbackprop import checkpoint, files, optim, pipeline, rundir, sweep, sweep_group, synthetic, train
from jaxbackprop.features import normalize_word
from jaxbackprop.step import make_step
from jaxbackprop.vocab import RESERVED

# adam at a rate that moves every row with a gradient visibly in a few steps; no word dropout, so a
# training word's row gets a gradient whenever its word is in a batch
MODE = dict(helpers.TINY, optimizer="adam", learning_rate=1e-2, word_dropout=0.0, embeddings_mode="pretrained_frozen")


@pytest.fixture(scope="module")
def corpus():
    """200 synthetic sentences whose vector file lacks every third training word (as GloVe lacks CoNLL's)."""
    c = synthetic.synthetic_corpus(seed=1, n_train=200, n_dev=40, n_test=40)
    words, vectors = synthetic.synthetic_vectors(dim=12)
    seen = sorted({normalize_word(t) for s in c["train"] for t in s.tokens})
    dropped = set(seen[::3])
    keep = [i for i, w in enumerate(words) if w not in dropped]
    pretrained = ([words[i] for i in keep], vectors[keep])
    return pipeline.prepare(c["train"], c["dev"], c["test"], pretrained, window=3)


def seen_rows(corpus) -> np.ndarray:
    """bool (V,): the rows of words that occur in the training windows."""
    rows = np.zeros(len(corpus.vocab), bool)
    rows[np.unique(corpus.train.windows)] = True
    rows[: len(RESERVED)] = False  # <pad>, <s>, </s> pad the windows; not words
    return rows


def assert_frozen_where_pretrained(initial, trained, corpus):
    """Pretrained rows bit-identical; every other seen row and W, U moved."""
    pre, seen = corpus.pretrained_rows, seen_rows(corpus)
    E0, E1 = np.asarray(initial["E"]), np.asarray(trained["E"])
    np.testing.assert_array_equal(E1[pre], E0[pre])
    moved = np.any(E1 != E0, axis=1)
    assert moved[seen & ~pre].all(), f"{np.sum(~moved[seen & ~pre])} seen rows without a vector did not move"
    for k in ("W", "U"):
        assert not np.allclose(np.asarray(trained[k]), np.asarray(initial[k])), f"{k} did not train"


def test_the_mask_is_the_rows_embedding_matrix_seeded(corpus):
    rows = corpus.pretrained_rows
    assert rows.dtype == bool and rows.shape == (len(corpus.vocab),)
    assert int(rows.sum()) == corpus.coverage["found"] and not rows[: len(RESERVED)].any()
    seen = seen_rows(corpus)
    # the corpus: some training words have a vector, some do not
    assert (seen & rows).sum() > 0 and (seen & ~rows).sum() > 0
    words, vectors = synthetic.synthetic_vectors(dim=12)
    index = {w: i for i, w in enumerate(words)}
    for i in np.flatnonzero(rows):
        np.testing.assert_array_equal(corpus.embeddings[i], vectors[index[corpus.vocab.words[i]]])
    assert pipeline.prepare(corpus_sentences()[0], corpus_sentences()[1]).pretrained_rows is None


def corpus_sentences():
    c = synthetic.synthetic_corpus(seed=1, n_train=20, n_dev=5, n_test=5)
    return c["train"], c["dev"]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A 2-epoch run (the compiled epoch), its directory, its initial and its final parameters."""
    run_dir = tmp_path_factory.mktemp("pretrained_frozen")
    config = train.configure(**MODE)
    helpers.quiet_run(config, corpus, run_dir)
    model_cfg, initial = rundir.init_run_params(config, corpus)
    final, _ = checkpoint.load_tree(run_dir / "checkpoint.npz", _template(config, corpus))
    return run_dir, initial, final[0]


def _template(config, corpus):
    model_cfg, params = rundir.init_run_params(config, corpus)
    return params, make_step(config, model_cfg, params, 4, pretrained_rows=corpus.pretrained_rows)[0]


def test_a_run_keeps_the_pretrained_rows_and_trains_the_others(corpus, trained):
    _, initial, final = trained
    assert_frozen_where_pretrained(initial, final, corpus)
    # the contrast that makes the test able to fail: fine-tuning moves the pretrained seen rows too
    fine = _loop_params(train.configure(**{**MODE, "embeddings_mode": "finetune"}), corpus, 6)
    moved = np.any(np.asarray(fine["E"]) != np.asarray(initial["E"]), axis=1)
    assert moved[seen_rows(corpus) & corpus.pretrained_rows].any()


def _loop_params(config, corpus, n_steps=None):
    """The parameters after ``n_steps`` (None: one epoch, every training word) of :func:`make_step`."""
    model_cfg, params = rundir.init_run_params(config, corpus)
    opt_state, step = make_step(config, model_cfg, params, 10, pretrained_rows=corpus.pretrained_rows)
    for i, batch in enumerate(pipeline.padded_batches(corpus.train, config.batch_size)):
        if i == n_steps:
            break
        params, opt_state, _ = step(params, opt_state, batch, jax.random.key(i))
    return params


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_the_step_loop_and_the_rows_only_step_keep_them_too(corpus, sparse):
    # sparse with adam is lazy Adam: a row whose gradient is dropped keeps E and its moments
    config = train.configure(**MODE, sparse=sparse)
    initial = rundir.init_run_params(config, corpus)[1]
    assert_frozen_where_pretrained(initial, _loop_params(config, corpus), corpus)


def test_a_sweep_group_keeps_them_and_equals_the_run(corpus, trained):
    _, initial, final = trained
    configs = [sweep.configure({"seed": s}, train.configure(**MODE)) for s in (0, 1)]
    group = sweep_group.train_group(configs, corpus, log=lambda *_: None)
    members = [jax.tree.map(lambda x, k=k: x[k], group.params) for k in range(2)]
    for k, config in enumerate(configs):
        assert_frozen_where_pretrained(rundir.init_run_params(config, corpus)[1], members[k], corpus)
    # member 0 is the run above (seed 0), trained by another program: float32 round-off over its Adam steps
    steps = MODE["epochs"] * -(-len(corpus.train.windows) // MODE["batch_size"])
    assert_trees_close(members[0], final, rtol=float32_tolerance(steps, 1.0, k=4, worst_case=True))


def test_a_resumed_run_ends_where_the_uninterrupted_one_did(corpus, trained, tmp_path):
    full_dir = trained[0]
    config = train.configure(**MODE)

    def stop_after_epoch_1(line):
        if line.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, corpus, tmp_path, progress=False, log=stop_after_epoch_1)
    helpers.quiet_run(config, corpus, tmp_path, resume=True)
    template = _template(config, corpus)
    full, _ = checkpoint.load_tree(full_dir / "checkpoint.npz", template)
    parts, _ = checkpoint.load_tree(tmp_path / "checkpoint.npz", template)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(parts)):  # params and optimizer state
        np.testing.assert_array_equal(a, b)
    rows = [files.read_jsonl(d / "metrics.jsonl") for d in (full_dir, tmp_path)]
    assert [r["dev_f1"] for r in rows[0]] == [r["dev_f1"] for r in rows[1]]


def test_without_pretrained_vectors_the_mode_is_refused_before_anything_is_written(tmp_path):
    bare = pipeline.prepare(*corpus_sentences(), window=3)
    config = train.configure(**MODE)
    with pytest.raises(ValueError, match="pretrained_frozen.*pass --embeddings"):
        helpers.quiet_run(config, bare, tmp_path)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="pretrained_frozen"):
        sweep_group.train_group([config], bare, log=lambda *_: None)
    assert "pretrained_frozen" in optim.EMBEDDING_MODES
