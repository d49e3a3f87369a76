"""The training loop end to end on tiny corpora: files, resume, gradient sources, divergence."""

import json

import helpers
import jax
import numpy as np
import pytest
from helpers import assert_trees_close

from jaxbackprop import checkpoint, cli, data, files, gradcheck, optim, pipeline, rundir, synthetic, train
from jaxbackprop.evaluate import evaluate
from jaxbackprop.step import make_step

TINY = helpers.TINY


@pytest.fixture(scope="module")
def corpus():
    return helpers.tiny_corpus()


run = helpers.quiet_run


def test_smoke_run_writes_every_file(corpus, tmp_path):
    summary = run(train.configure(**TINY), corpus, tmp_path)
    for name in (
        "config.json",
        "vocab.json",
        "metrics.jsonl",
        "checkpoint.npz",
        "best.npz",
        "learning_curve.png",
        "summary.json",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = files.read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["dev_f1"] <= 1 for r in rows)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    conf = json.loads((tmp_path / "config.json").read_text())
    assert conf["model"]["vocab_size"] == len(corpus.vocab) and conf["environment"]["jax"] == jax.__version__
    assert 0 < summary["test_f1"] <= 1 and summary["best_epoch"] in (1, 2)
    assert not list(tmp_path.glob(f"{files.TMP_PREFIX}*")), "a temporary file was left behind"
    # the default decoder is Viterbi; the per-token argmax F1 is recorded beside it
    _, model_cfg, _, tags, best = rundir.load_run(tmp_path)
    test = {m: evaluate(best, corpus.test, tags, model_cfg, m) for m in ("viterbi", "argmax")}
    assert summary["decode"] == "viterbi" and summary["test_f1"] == test["viterbi"]["f1"]
    assert summary["test_argmax_f1"] == test["argmax"]["f1"] == test["viterbi"]["argmax_f1"]
    assert rows[summary["best_epoch"] - 1]["dev_argmax_f1"] == summary["dev_argmax_f1"]


def test_resume_reaches_the_same_result(corpus, tmp_path):
    config = train.configure(**{**TINY, "epochs": 3})
    run(config, corpus, tmp_path / "full")

    def interrupt_after_first_epoch(line):
        if line.startswith("epoch   1/"):
            raise KeyboardInterrupt  # like Ctrl-C: epoch 1's checkpoint is already on disk

    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, corpus, tmp_path / "parts", progress=False, log=interrupt_after_first_epoch)
    assert len(files.read_jsonl(tmp_path / "parts" / "metrics.jsonl")) == 1
    run(config, corpus, tmp_path / "parts", resume=True)
    model_cfg, params = rundir.init_run_params(config, corpus)
    template = (params, make_step(config, model_cfg, params, steps_per_epoch=4)[0])
    full, meta_full = checkpoint.load_tree(tmp_path / "full" / "checkpoint.npz", template)
    parts, meta_parts = checkpoint.load_tree(tmp_path / "parts" / "checkpoint.npz", template)
    assert meta_full["epoch"] == meta_parts["epoch"] == 3
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(parts)):  # params and optimizer state
        np.testing.assert_array_equal(a, b)
    rows_full = files.read_jsonl(tmp_path / "full" / "metrics.jsonl")
    rows_parts = files.read_jsonl(tmp_path / "parts" / "metrics.jsonl")
    assert [r["dev_f1"] for r in rows_full] == [r["dev_f1"] for r in rows_parts]


def _params_after_steps(config, corpus, n_steps, dtype=np.float32):
    model_cfg, params = rundir.init_run_params(config, corpus)
    params = jax.tree.map(lambda x: x.astype(dtype), params)
    opt_state, step = make_step(config, model_cfg, params, steps_per_epoch=10)
    for i, batch in enumerate(pipeline.padded_batches(corpus.train, config.batch_size)):
        if i == n_steps:
            break
        params, opt_state, _ = step(params, opt_state, batch, jax.random.key(i))
    return params


@pytest.mark.parametrize("other", [dict(grad="autodiff"), dict(grad="autodiff", impl="flax")])
def test_gradient_sources_train_to_the_same_parameters(corpus, other):
    base = dict(TINY, dropout=0.2, word_dropout=0.1, optimizer="adam", learning_rate=1e-2)
    with jax.enable_x64(True):
        manual = _params_after_steps(train.configure(**base), corpus, 5, np.float64)
        auto = _params_after_steps(train.configure(**{**base, **other}), corpus, 5, np.float64)
    # float64, two gradient sources through 5 Adam steps: the project's manual-vs-autodiff tolerance
    assert_trees_close(auto, manual, rtol=gradcheck.MANUAL_VS_AUTODIFF_RTOL)
    initial = rundir.init_run_params(train.configure(**base), corpus)[1]
    assert not np.allclose(manual["W"], initial["W"]), "nothing trained"


def test_frozen_embeddings_do_not_move(corpus):
    config = train.configure(**TINY, embeddings_mode="frozen")
    initial = rundir.init_run_params(config, corpus)[1]
    params = _params_after_steps(config, corpus, 3)
    np.testing.assert_array_equal(params["E"], initial["E"])
    assert not np.allclose(params["W"], initial["W"])


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    config = train.configure(**{**TINY, "epochs": 3, "optimizer": "sgd", "learning_rate": 1e30, "schedule": "constant"})
    with pytest.raises(train.TrainingDiverged, match=r"epoch 1: the training loss became (nan|inf)"):
        run(config, corpus, tmp_path)
    assert not (tmp_path / "checkpoint.npz").exists()


@pytest.mark.parametrize("schedule", optim.SCHEDULES)
def test_schedules_start_at_the_rate_and_stay_positive(schedule):
    config = train.configure(learning_rate=0.1, schedule=schedule, epochs=4, decay_epochs=1)
    lr = optim.make_schedule(config, steps_per_epoch=10)
    values = np.array([float(lr(s)) for s in range(40)])
    assert np.all(values >= 0) and np.max(values) <= 0.1 * (1 + 1e-6)  # float32 schedules
    if schedule == "step":
        assert values[0] == pytest.approx(0.1) and values[10] == pytest.approx(0.05) and values[9] == pytest.approx(0.1)
    if schedule == "warmup_cosine":
        assert values[0] == 0.0 and values[10] == pytest.approx(0.1)


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="optimizer must name an optax optimizer"):
        train.configure(optimizer="adamm")
    with pytest.raises(ValueError, match="schedule must be one of"):
        train.configure(schedule="linear")


def test_cli_train_evaluate_predict_round_trip(tmp_path, capsys, monkeypatch):
    c = synthetic.synthetic_corpus(seed=2, n_train=150, n_dev=30, n_test=30)
    for split in ("train", "dev", "test"):
        data.write_conll(c[split], tmp_path / f"{split}.txt")
    run_dir = tmp_path / "run"
    files_args = [f"--{split}={tmp_path / f'{split}.txt'}" for split in ("train", "dev", "test")]
    args = ["train", *files_args, "--out", str(run_dir), *"--epochs 1 --hidden-dim 8 --window 3 --no-progress".split()]
    assert cli.main(args) == 0
    assert "best dev F1" in capsys.readouterr().out
    assert cli.main(["evaluate", "--run", str(run_dir), "--data", str(tmp_path / "test.txt")]) == 0
    assert "entity F1" in capsys.readouterr().out
    (tmp_path / "raw.txt").write_text("Mr. Smith went to Paris .\n\nshares of Acme rose\n")
    assert cli.main(["predict", "--run", str(run_dir), "--input", str(tmp_path / "raw.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    tagged = [line.split() for line in lines if line]
    assert [t[0] for t in tagged] == "Mr. Smith went to Paris . shares of Acme rose".split()
    tags = set(json.loads((run_dir / "config.json").read_text())["tags"])
    assert all(len(t) == 2 and t[1] in tags for t in tagged)


def test_evaluate_rejects_a_malformed_file_with_its_line(tmp_path, corpus, capsys):
    run(train.configure(**{**TINY, "epochs": 1}), corpus, tmp_path / "run")
    bad = tmp_path / "bad.txt"
    bad.write_text("EU NNP B-NP B-ORG\nrejects VBZ\n")
    with pytest.raises(data.DataError, match=r"bad.txt:2:"):
        data.read_conll(bad)
    # the command line says the same in one line and exits with 2 (an error in what was given)
    assert cli.main(["evaluate", "--run", str(tmp_path / "run"), "--data", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"jaxbackprop: error: {bad}:2:")


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_sparse_training_equals_dense_where_the_math_is_equal(corpus, optimizer):
    """Rows-only SGD / Adagrad on E give the dense result, word dropout and dropout included."""
    base = dict(TINY, dropout=0.2, word_dropout=0.1, optimizer=optimizer, learning_rate=0.1)
    with jax.enable_x64(True):
        dense = _params_after_steps(train.configure(**base), corpus, 5, np.float64)
        rows = _params_after_steps(train.configure(**base, sparse=True), corpus, 5, np.float64)
    assert_trees_close(rows, dense, rtol=gradcheck.MANUAL_VS_AUTODIFF_RTOL)
