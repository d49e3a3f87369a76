"""The gradient checker: it passes correct gradients and catches planted wrong ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbackprop import ModelConfig, backprop, check_matrix, cli, model
from jaxbackprop import nonlinearities as nl
from jaxbackprop.gradcheck import check_gradients

CFG = ModelConfig(vocab_size=12, embed_dim=3, window=3, hidden_dim=4, num_classes=3, activation="tanh")


def repeated_batch():
    return {"windows": np.array([[5, 7, 5], [7, 1, 2], [5, 5, 5]], np.int32), "labels": np.array([0, 2, 1], np.int32)}


def with_bad_E(make_E):
    """The hand-derived gradient, but with dJ/dE made by make_E(ids, rows, V)."""

    def value_and_grad(params, batch, cfg, *, key=None):
        J, grads, (ids, rows) = backprop.manual_value_and_row_grads(params, batch, cfg, key=key)
        grads["E"] = make_E(ids, rows, cfg.vocab_size)
        return J, grads

    return value_and_grad


def test_correct_gradients_pass_with_small_errors():
    result = check_gradients(check_matrix.check_params(0, CFG), repeated_batch(), CFG)
    assert result.passed
    for t in result.tensors:
        assert t.manual_vs_autodiff.max_rel <= 1e-12, t
        assert t.numeric_vs_manual.max_rel <= 1e-6, t
        assert t.grad_max > 1e-3, f"{t.name}: a zero gradient would prove nothing"
        assert t.probes == f"all {int(np.prod(t.shape))}"


def test_missing_scatter_add_is_caught():
    """Assigning instead of adding the rows of a repeated word loses one of its updates."""
    broken = with_bad_E(lambda ids, rows, V: jnp.zeros((V, rows.shape[1]), rows.dtype).at[ids].set(rows))
    result = check_gradients(check_matrix.check_params(0, CFG), repeated_batch(), CFG, value_and_grad=broken)
    assert not result.passed
    assert not result["E"].manual_vs_autodiff.passed and not result["E"].numeric_vs_manual.passed
    assert result["E"].numeric_vs_manual.worst[0] == 5  # the word used 5 times
    assert result["W"].passed and result["b"].passed  # the other tensors are still right
    assert "NO" in result.table()


def test_transposed_weight_gradient_is_caught():
    """x^T delta reshaped to W's shape has the right shape and the wrong values."""

    def broken(params, batch, cfg, *, key=None):
        J, g = backprop.manual_value_and_grad(params, batch, cfg, key=key)
        g["W"] = g["W"].T.reshape(g["W"].shape)
        return J, g

    result = check_gradients(check_matrix.check_params(0, CFG), repeated_batch(), CFG, value_and_grad=broken)
    assert not result["W"].passed and result["E"].passed and not result.passed


def test_missing_local_gradient_is_caught(monkeypatch):
    """Forgetting f'(z) (delta = upstream instead of upstream o f'(z)) breaks every layer below."""
    monkeypatch.setattr(nl, "derivative", lambda name, z, h, alpha=None: jnp.ones_like(z))
    # a fresh callable, so the check traces the patched code instead of reusing a compiled one
    patched = lambda *args, **kwargs: backprop.manual_value_and_grad(*args, **kwargs)  # noqa: E731
    result = check_gradients(check_matrix.check_params(0, CFG), repeated_batch(), CFG, value_and_grad=patched)
    assert {t.name for t in result.tensors if not t.passed} == {"E", "W", "b"}


def test_directions_catch_a_bug_in_a_large_embedding():
    cfg = ModelConfig(vocab_size=5000, embed_dim=8, window=3, hidden_dim=6, num_classes=3)
    params = check_matrix.check_params(1, cfg)
    good = check_gradients(params, repeated_batch(), cfg, max_full=500, directions=4)
    assert good.passed and good["E"].probes == "4 directions"
    halved = with_bad_E(lambda ids, rows, V: backprop.scatter_rows(ids, 0.5 * rows, V))
    bad = check_gradients(params, repeated_batch(), cfg, max_full=500, directions=4, value_and_grad=halved)
    assert not bad["E"].numeric_vs_manual.passed and bad["E"].numeric_vs_autodiff.passed


def test_check_is_scoped_float64_and_does_not_mutate_inputs():
    params = {k: np.asarray(v, np.float32) for k, v in check_matrix.check_params(3, CFG).items()}
    before = {k: v.copy() for k, v in params.items()}
    batch = repeated_batch()
    batch_before = {k: v.copy() for k, v in batch.items()}
    assert not jax.config.x64_enabled
    result = check_gradients(params, batch, CFG)
    assert not jax.config.x64_enabled, "the check leaked x64 into global state"
    assert result.passed  # float32 inputs are checked in float64
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
        assert params[k].dtype == np.float32
    for k in batch:
        np.testing.assert_array_equal(batch[k], batch_before[k])


def test_table_names_every_tensor_and_its_errors():
    result = check_gradients(check_matrix.check_params(0, CFG), repeated_batch(), CFG, label="demo")
    text = str(result)
    assert text.splitlines()[0] == "demo"
    for name in ("E", "W", "b", "U", "c"):
        assert any(line.startswith(name + " ") for line in text.splitlines())


def test_nan_gradient_fails():
    def nan_grad(params, batch, cfg, *, key=None):
        J, g = backprop.manual_value_and_grad(params, batch, cfg, key=key)
        g["c"] = g["c"] * jnp.nan
        return J, g

    result = check_gradients(check_matrix.check_params(0, CFG), repeated_batch(), CFG, value_and_grad=nan_grad)
    assert not result["c"].passed and result["c"].manual_vs_autodiff.max_rel == np.inf


def test_wrong_gradient_structure_raises():
    def missing_key(params, batch, cfg, *, key=None):
        J, g = backprop.manual_value_and_grad(params, batch, cfg, key=key)
        del g["c"]
        return J, g

    with pytest.raises(ValueError, match="gradient keys"):
        check_gradients(check_matrix.check_params(0, CFG), repeated_batch(), CFG, value_and_grad=missing_key)


@pytest.mark.parametrize("case", check_matrix.MATRIX_CASES)
def test_case_batches_are_what_they_say(case):
    cfg = ModelConfig(
        vocab_size=30, embed_dim=2, window=5, hidden_dim=3, head="score", feature_vocab_size=4, feature_dim=2
    )
    batch, key = check_matrix.case_batch(case, 0, cfg)
    model.check_batch(batch, cfg)
    if case == "batch of 1":
        assert batch["windows"].shape == (1, 5)
    if case == "repeated words":
        assert np.all(batch["windows"][1:, 0] == batch["windows"][1:, 2])  # row 0 is padding
        assert {1, 2} <= set(batch["windows"][0].tolist()) and "weights" in batch
    assert (key is not None) == (case == "random windows")


def test_full_matrix_passes():
    """`jaxbackprop check`: 6 activations x 3 heads (softmax, score, crf) x 3 cases, every tensor within tolerance."""
    results = list(check_matrix.check_matrix())
    assert len(results) == 54
    assert sum("/ crf /" in r.label for r in results) == 18
    failures = [r.label for r in results if not r.passed]
    assert not failures, failures
    assert all(t.grad_max > 1e-4 for r in results for t in r.tensors)


def test_a_transposed_dW_in_the_library_is_a_failed_row_naming_W(monkeypatch, capsys):
    """Issue 21 item 10: a planted `dW = x.T @ delta` in the library's own pass made `jaxbackprop check`
    crash (TypeError in l2_bwd, exit 3, no rows); now each check is a failed row naming W and both shapes."""
    reference = backprop.linear_bwd

    def transposed(params, x, delta):
        grads, dx = reference(params, x, delta)
        return {**grads, "W": x.T @ delta}, dx

    monkeypatch.setattr(backprop, "linear_bwd", transposed)
    # another hidden size than every other test's: the jitted pass is traced afresh, with the planted step
    monkeypatch.setitem(check_matrix.MATRIX_MODEL, "hidden_dim", 7)
    assert cli.main(["check", "--activation", "tanh", "--head", "softmax"]) == 1
    out = capsys.readouterr().out
    message = "linear_bwd returned dJ/dW of the wrong shape: expected (H, D) = (7, 40), got (40, 7) (transposed?)"
    rows = [line for line in out.splitlines() if line.startswith("tanh / softmax /") and "  NO" in line]
    assert len(rows) == 3 and all(line.endswith(f"NO: {message}") for line in rows), out
    assert f"FAILED before any comparison: {message}" in out
    assert "FAILED: 3 of the checks exceeded a tolerance" in out
