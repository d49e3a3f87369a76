"""Data parallelism: training with the batch split over 4 devices reaches the one-device params.

The 4 CPU devices exist only if ``XLA_FLAGS`` is set before jax is imported, so the real check
runs in a fresh interpreter; it raises (and exits nonzero) on the first failed assertion. It
trains in float64: the two programs reduce the batch in different orders, and Adam's
m / sqrt(v) divides by the gradient, so the round-off of an entry that nearly cancels can grow
far beyond eps; in float64 that stays many orders below anything a real bug would cause.
"""

import doctest
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbackprop import parallel

CHECK = r"""
import jax
import numpy as np
import optax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from helpers import assert_trees_close
from jaxbackprop import backprop, gradcheck, model, parallel
from jaxbackprop.step import make_train_step

STEPS, B = 5, 8
assert jax.device_count() == 4, f"expected 4 forced host devices, got {jax.device_count()}"
cfg = model.ModelConfig(vocab_size=50, embed_dim=4, window=3, hidden_dim=8, num_classes=5, activation="tanh")
rng = np.random.default_rng(0)
# the last 3 rows are padding (weight 0): device 3 holds only padding, so the weighted mean is global
weights = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float64)
batches = [{"windows": rng.integers(0, cfg.vocab_size, (B, cfg.window)).astype(np.int32),
            "labels": rng.integers(0, cfg.num_classes, B).astype(np.int32), "weights": weights}
           for _ in range(STEPS)]
mesh = parallel.data_mesh()
params = model.init_params(jax.random.key(0), cfg, dtype=jnp.float64)
# float64 round-off after STEPS steps is ~STEPS eps64 ~ 1e-15 relative; the project's float64 tolerance
# (1e-10) leaves room for Adam magnifying the round-off of a nearly cancelling gradient entry
RTOL = gradcheck.MANUAL_VS_AUTODIFF_RTOL
tx = optax.adam(1e-2)

def run(step, params, opt_state, put):
    for i, batch in enumerate(batches):
        params, opt_state, J = step(params, opt_state, put(batch), jax.random.key(i))
    return params, J

for name, value_and_grad in (("manual", backprop.manual_value_and_grad), ("autodiff", jax.value_and_grad(model.loss))):
    step = make_train_step(cfg, tx, value_and_grad)
    single, J1 = run(step, params, tx.init(params), lambda b: b)

    sharded_batch = parallel.shard_batch(batches[0], mesh)
    for key, x in sharded_batch.items():
        assert len(x.sharding.device_set) == 4, f"{key}: on {len(x.sharding.device_set)} devices, expected 4"
        shapes = {s.data.shape for s in x.addressable_shards}
        assert shapes == {(2,) + batches[0][key].shape[1:]}, f"{key}: shard shapes {shapes}"
    step = make_train_step(cfg, tx, value_and_grad)
    replicated = parallel.replicate((params, tx.init(params)), mesh)
    sharded, J4 = run(step, *replicated, lambda b: parallel.shard_batch(b, mesh))

    assert step._cache_size() == 1, f"{name}: the sharded step compiled {step._cache_size()} times"
    for key, p in sharded.items():
        where = f"{name}: {key} not replicated: {p.sharding}"
        assert p.sharding.is_fully_replicated and len(p.sharding.device_set) == 4, where
    assert float(np.max(np.abs(np.asarray(sharded["W"]) - np.asarray(params["W"])))) > 1e-3, f"{name}: W did not train"
    assert all(p.dtype == np.float64 for p in sharded.values()), f"{name}: not float64"
    assert_trees_close(sharded, single, rtol=RTOL)
    np.testing.assert_allclose(float(J4), float(J1), rtol=RTOL, err_msg=f"{name}: last loss")

try:
    parallel.shard_batch({k: v[:6] for k, v in batches[0].items()}, mesh)
    raise AssertionError("a batch of 6 rows on 4 devices did not raise")
except ValueError as e:
    assert "6" in str(e) and "4 devices" in str(e), f"unclear message: {e}"

# mesh_for: how many devices, which ones, and what a wrong number says
assert parallel.mesh_for("all").devices.tolist() == jax.devices()
assert parallel.mesh_for(2).devices.tolist() == jax.devices()[:2]
assert parallel.mesh_for(1) is None and parallel.mesh_for(None) is None
for wrong, message in ((5, "--devices 5: only 4 devices are available"), (0, "integer >= 1 or 'all'")):
    try:
        parallel.mesh_for(wrong)
        raise AssertionError(f"mesh_for({wrong!r}) did not raise")
    except ValueError as e:
        assert message in str(e), f"unclear message: {e}"
parallel.check_batch_divides(8, parallel.mesh_for(4))
try:
    parallel.check_batch_divides(10, parallel.mesh_for(4))
    raise AssertionError("a batch size of 10 on 4 devices did not raise")
except ValueError as e:
    assert "--batch-size 10" in str(e) and "(e.g. 8 or 12)" in str(e), f"unclear message: {e}"

# local_copy: a replicated tree back on one device, the same values; a split array gathered
tree = {"W": np.arange(12.0).reshape(3, 4), "count": np.int32(3)}
local = parallel.local_copy(parallel.replicate(tree, mesh))
for key, x in local.items():
    assert x.sharding.device_set == {jax.local_devices()[0]}, f"{key}: on {x.sharding.device_set}"
    np.testing.assert_array_equal(np.asarray(x), tree[key], err_msg=key)
split = parallel.local_copy(parallel.shard_batch({"rows": np.arange(8.0)}, mesh))["rows"]
assert split.sharding.device_set == {jax.local_devices()[0]}
np.testing.assert_array_equal(np.asarray(split), np.arange(8.0))
print("PARALLEL OK")
"""


def test_data_parallel_training_matches_one_device():
    _run_on_devices(CHECK, 4, "PARALLEL OK")


# The crf head over 2 devices: the same dropout masks and word dropout as on one device, so the same
# steps. Plain SGD in float32, as test_distributed's runs: the two programs sum each gradient in
# another order (~eps32 apart), each of the T steps rounds p - lr g apart by up to eps32 |p|, and
# with lr |g| << |p| earlier differences pass on nearly unchanged, piling up at most linearly:
# rtol 4 eps32 T of each tensor's largest entry (~1.6e-5 for T = 34). A mask drawn differently
# moves entries by ~lr |g| per step, three orders of magnitude more.
CRF_CHECK = r"""
import jax
import numpy as np

import helpers
from jaxbackprop import compiled_epoch, parallel, pipeline, rundir, train

assert jax.device_count() == 2, f"expected 2 forced host devices, got {jax.device_count()}"
corpus = helpers.tiny_corpus()
# 128 tokens are 12 sentences per step (6 per device), 17 steps an epoch; dropout on x and h, word dropout
config = train.configure(**{**helpers.TINY, "head": "crf", "batch_size": 128, "optimizer": "sgd",
                            "learning_rate": 0.1, "dropout": 0.3, "word_dropout": 0.1})
EPOCHS, SENTENCES, STEPS = 2, 12, 17
trained = {}
for devices in (None, 2):
    mesh = parallel.mesh_for(devices)
    model_cfg, params = rundir.init_run_params(config, corpus)
    rows = pipeline.training_rows(corpus.train, model_cfg)
    assert compiled_epoch.rows_per_step(config.batch_size, rows, mesh) == (SENTENCES,) * len(rows)
    assert pipeline.steps_per_epoch(rows, (SENTENCES,) * len(rows)) == STEPS
    opt_state, epoch = compiled_epoch.compile_epoch(config, model_cfg, params, STEPS, corpus.train, mesh=mesh)
    losses = []
    for e in range(1, EPOCHS + 1):
        if mesh is not None:
            params, opt_state = parallel.replicate((params, opt_state), mesh)
        params, opt_state, loss = epoch(params, opt_state, compiled_epoch.epoch_key(config.seed, e))
        params = parallel.local_copy(params)
        losses.append(loss)
    trained[devices] = {k: np.asarray(v) for k, v in params.items()}, losses
(one, losses1), (two, losses2) = trained[None], trained[2]
rtol = helpers.float32_tolerance(EPOCHS * STEPS, 1.0, k=4, worst_case=True)
for key, want in one.items():
    err, scale = float(np.max(np.abs(two[key] - want))), float(np.max(np.abs(want)))
    assert want.dtype == np.float32 and err <= rtol * scale, f"{key}: max |diff| {err:.3e} > {rtol:.1e} * {scale:.3e}"
np.testing.assert_allclose(losses2, losses1, rtol=rtol)
initial = rundir.init_run_params(config, corpus)[1]
assert float(np.max(np.abs(one["W"] - initial["W"]))) > 1e-3, "W did not train"
print("CRF OK")
"""


def _run_on_devices(script: str, devices: int, ok: str) -> None:
    """Run ``script`` in a fresh interpreter with ``devices`` forced CPU devices; it must print ``ok``."""
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and ok in done.stdout, f"subprocess failed:\n{done.stdout}\n{done.stderr[-4000:]}"


def test_crf_head_on_two_devices_draws_what_one_device_draws():
    _run_on_devices(CRF_CHECK, 2, "CRF OK")


def test_shard_batch_needs_equal_row_counts():
    batch = {"windows": np.zeros((4, 3), np.int32), "labels": np.zeros(3, np.int32)}
    with pytest.raises(ValueError, match=r"same number of rows.*\[3, 4\]"):
        parallel.shard_batch(batch, parallel.data_mesh())


def test_mesh_for_one_device_and_wrong_values():
    assert parallel.mesh_for(None) is None and parallel.mesh_for(1) is None
    assert (parallel.mesh_for("all") is None) == (jax.device_count() == 1)
    n = jax.device_count() + 1
    with pytest.raises(ValueError, match=rf"^--devices {n}: only {n - 1} devices? (is|are) available"):
        parallel.mesh_for(n)
    for wrong in (0, -1, True, "4", 2.0):
        with pytest.raises(ValueError, match="must be an integer >= 1 or 'all'"):
            parallel.mesh_for(wrong)


def test_one_device_accepts_any_batch_size_and_local_copy_keeps_plain_arrays():
    parallel.check_batch_divides(7, None)
    tree = {"W": jnp.ones((2, 3)), "n": np.int32(2), "lr": 0.1}
    local = parallel.local_copy(tree)
    assert all(a is b for a, b in zip(jax.tree.leaves(local), jax.tree.leaves(tree)))


def test_agreed_is_the_flag_itself_in_one_process():
    assert parallel.agreed(np.bool_(True)) is True and parallel.agreed(0) is False


def test_docstring_examples():
    failed, attempted = doctest.testmod(parallel, raise_on_error=False)
    assert attempted >= 8 and failed == 0
