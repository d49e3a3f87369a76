"""Sweeps: one literal table drives the run, the vmapped-vs-alone check, divergence and the files."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import assert_trees_close, float32_tolerance

from jaxbackprop import compiled_epoch, files, pipeline, rundir, sweep, sweep_group, synthetic, train

BASE = train.configure(hidden_dim=8, feature_dim=2, window=3, batch_size=64, epochs=2, schedule="constant")
# Two groups (sgd, adam). The adam rows vary every per-member field: rate, schedule, L2 and seed.
TABLE = [
    {"optimizer": "sgd", "learning_rate": 0.1},
    {"optimizer": "sgd", "learning_rate": 1e6},  # diverges
    {"optimizer": "adam", "learning_rate": 1e-2},
    {"optimizer": "adam", "learning_rate": 3e-3, "schedule": "cosine", "l2": 1e-2, "seed": 3},
]
DIVERGING = [1]


@pytest.fixture(scope="module")
def corpus():
    c = synthetic.synthetic_corpus(seed=1, n_train=150, n_dev=30, n_test=30)
    return pipeline.prepare(c["train"], c["dev"], c["test"], window=3)


@pytest.fixture(scope="module")
def swept(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return out, sweep.run_sweep(TABLE, corpus, out, base=BASE, log=lambda *_: None)


def adam_rows():
    return [i for i, row in enumerate(TABLE) if row["optimizer"] == "adam"]


@pytest.fixture(scope="module")
def adam_group(corpus):
    return sweep_group.train_group([sweep.configure(TABLE[i], BASE) for i in adam_rows()], corpus, log=lambda *_: None)


def train_alone(config, corpus):
    """The reference: the compiled epoch of `jaxbackprop train` (step.make_step: L2 inside the model,
    the optax schedule), one member at a time, with the member's own init, order and dropout keys."""
    model_cfg, params = rundir.init_run_params(config, corpus)
    steps = -(-len(corpus.train.windows) // config.batch_size)
    opt_state, epoch_fn = compiled_epoch.make_compiled_epoch(config, model_cfg, params, steps)
    data = compiled_epoch.device_data(corpus.train)
    for epoch in range(1, config.epochs + 1):
        params, opt_state, loss = epoch_fn(params, opt_state, data, compiled_epoch.epoch_key(config.seed, epoch))
    return params, float(loss)


def trained_rtol(corpus) -> float:
    """float32 round-off between two programs that train the same member (vmapped vs alone, sharded vs
    not): each of the T Adam steps p - lr m / sqrt(v) rounds apart by up to eps32 |p| in the two (and
    the update's own round-off, from batch sums in other orders, is of the same size relative to
    |p|), piling up linearly over T steps; relative to each tensor's largest entry."""
    steps = BASE.epochs * -(-len(corpus.train.windows) // BASE.batch_size)
    return float32_tolerance(steps, 1.0, k=4, worst_case=True)


def test_vmapped_group_matches_training_each_member_alone(corpus, adam_group):
    rtol = trained_rtol(corpus)
    for k, i in enumerate(adam_rows()):
        params, last_loss = train_alone(sweep.configure(TABLE[i], BASE), corpus)
        member = jax.tree.map(lambda x, k=k: x[k], adam_group.params)
        assert_trees_close(member, params, rtol=rtol)
        assert adam_group.curves[k][-1]["train_loss"] == pytest.approx(last_loss, rel=rtol)


def test_a_vmapped_member_equals_that_member_alone(corpus, adam_group):
    """The same program, vmapped over two members or run for one: float round-off apart."""
    for k, i in enumerate(adam_rows()):
        alone = sweep_group.train_group([sweep.configure(TABLE[i], BASE)], corpus, log=lambda *_: None)
        member = jax.tree.map(lambda x, k=k: x[k], adam_group.params)
        assert_trees_close(member, jax.tree.map(lambda x: x[0], alone.params), rtol=trained_rtol(corpus))
        assert [r["epoch"] for r in alone.curves[0]] == [r["epoch"] for r in adam_group.curves[k]]


def test_a_new_learning_rate_reuses_the_compiled_epoch(corpus, adam_group):
    configs = [sweep.configure({**TABLE[i], "learning_rate": 0.5}, BASE) for i in adam_rows()]
    _, group = sweep_group.group_epoch(sweep_group.group_key(configs[0], corpus), True)  # as train_group
    before = group._cache_size()
    sweep_group.train_group(configs, corpus, log=lambda *_: None)
    assert group._cache_size() == before == 1


def test_a_diverging_member_is_recorded_and_the_others_finish(swept):
    _, rows = swept
    for i, row in enumerate(rows):
        assert row["diverged"] == (i in DIVERGING), (i, row)
        if i in DIVERGING:
            assert row["best_dev_f1"] is None and row["diverged_epoch"] == 1
        else:
            assert 0 <= row["best_dev_f1"] <= 1 and row["best_epoch"] in (1, 2) and np.isfinite(row["final_train_loss"])


def test_the_sweep_writes_every_file(swept):
    out, rows = swept
    for name in ("results.csv", "results.json", "curves.json", "curves.png", "heatmap.png", "config.json"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(f"{files.TMP_PREFIX}*")), "a temporary file was left behind"
    assert json.loads((out / "results.json").read_text()) == rows
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["optimizer"] for r in table] == [row["optimizer"] for row in TABLE]
    assert [r["diverged"] for r in table] == [str(i in DIVERGING) for i in range(len(TABLE))]
    curves = json.loads((out / "curves.json").read_text())
    assert [c["config"] for c in curves] == TABLE
    assert [len(c["epochs"]) for c in curves] == [0 if i in DIVERGING else BASE.epochs for i in range(len(TABLE))]
    config = json.loads((out / "config.json").read_text())
    assert config["table"] == TABLE and config["environment"]["jax"] == jax.__version__
    # every row trained once, in a program of its group (as many programs as the measured chunk makes)
    assert sorted(j for g in config["plan"] for j in g["rows"]) == list(range(len(TABLE)))
    assert {g["group"] for g in config["plan"]} == {0, 1}


def test_a_sweep_replaces_earlier_results_only_when_asked(swept, corpus, tmp_path):
    out, _ = swept
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(rundir.RunDirError, match=r"already holds a sweep's results \(results\.csv, .*--overwrite"):
        sweep.run_sweep(TABLE, corpus, out, base=BASE, log=lambda *_: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (tmp_path / "results.json").write_text("[]\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    rows = sweep.run_sweep(TABLE[:1], corpus, tmp_path, base=BASE, epochs=1, log=lambda *_: None, overwrite=True)
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_rows_group_by_optimizer_and_shapes():
    configs = [sweep.configure(row, BASE) for row in TABLE]
    assert sweep_group.group_indices(configs) == [[0, 1], [2, 3]]
    default = [sweep.configure(row, BASE) for row in sweep.default_table()]
    assert [len(g) for g in sweep_group.group_indices(default)] == [len(sweep.LEARNING_RATES)] * len(sweep.OPTIMIZERS)
    with pytest.raises(ValueError, match="unknown TrainConfig fields \\['lr'\\]"):
        sweep.configure({"lr": 0.1}, BASE)


def test_the_measured_chunk_is_the_fastest_per_member(corpus):
    """measure_chunk times 1 member alone and the group stacked; it picks whichever was faster."""
    configs = [sweep.configure(TABLE[i], BASE) for i in adam_rows()]
    chunk, timings = sweep_group.measure_chunk(configs, corpus, log=lambda *_: None)
    assert sorted(timings) == [1, 2]
    assert chunk == min(timings, key=timings.get)
    assert sweep_group.measure_chunk(configs[:1], corpus, log=lambda *_: None) == (1, {})


@pytest.mark.parametrize(
    "epoch_seconds, remaining, expected",
    [
        ([3.0, 0.1, 0.1], 9, False),  # compile 2.9 s; 9 members x 3 epochs x 0.1 s = 2.7 s < 20 x 2.9 s
        ([3.0, 0.1, 0.1], 200, True),  # 200 x 3 x 0.1 = 60 s >= 58 s
        ([3.0], 5, True),  # one epoch: compile and epoch cannot be told apart, so measure
        ([3.0, 0.1], 0, False),  # nobody left to stack
    ],
)
def test_stacking_is_measured_only_where_it_can_repay_its_compile(epoch_seconds, remaining, expected):
    alone = sweep_group.GroupRun({}, [], [], sum(epoch_seconds), 1, epoch_seconds)
    assert sweep_group.worth_measuring(alone, remaining) is expected


SHARDED = """
import json, sys
import numpy as np
from jaxbackprop import pipeline, synthetic, sweep, sweep_group
sys.path.insert(0, {tests!r})
import test_sweep as t
c = synthetic.synthetic_corpus(seed=1, n_train=150, n_dev=30, n_test=30)
corpus = pipeline.prepare(c["train"], c["dev"], c["test"], window=3)
configs = [sweep.configure(t.TABLE[i], t.BASE) for i in t.adam_rows()]
run = sweep_group.train_group(configs, corpus, log=lambda *_: None)
np.savez({out!r}, **{{k: np.asarray(v) for k, v in run.params.items()}})
print(json.dumps({{"devices": run.devices}}))
"""


@pytest.mark.slow
def test_members_shard_across_devices(corpus, adam_group, tmp_path):
    """Two members padded to four forced host devices, the configs axis sharded: same parameters."""
    out = tmp_path / "params.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    script = textwrap.dedent(SHARDED).format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"devices": 4}
    with np.load(out) as sharded:
        assert_trees_close(dict(sharded), jax.tree.map(np.asarray, adam_group.params), rtol=trained_rtol(corpus))


def test_stacked_members_are_capped_by_the_devices_memory():
    cfg = dataclasses.replace(BASE.model, vocab_size=100, num_classes=9, feature_vocab_size=20)
    n_params = sum(int(np.prod(s)) for s in sweep_group.model.param_shapes(cfg).values())
    per_member = sweep_group.STATE_COPIES * 4 * n_params

    class Device:  # reports its memory as a GPU does
        def __init__(self, limit):
            self.limit = limit

        def memory_stats(self):
            return {"bytes_limit": self.limit}

    assert sweep_group.max_members(cfg, Device(2 * 10 * per_member)) == 10  # half the memory: 10 members
    assert sweep_group.max_members(cfg, Device(per_member)) == 1  # never fewer than one
