"""Gradient checking: hand-derived vs ``jax.grad`` vs two-sided numeric differences.

Per parameter tensor, three comparisons are made, all in float64:

* **manual vs autodiff** -- every coordinate, tolerance :data:`MANUAL_VS_AUTODIFF_RTOL`;
* **numeric vs manual** and **numeric vs autodiff** -- central differences
  ``(J(theta + h v) - J(theta - h v)) / 2h`` compared with ``<grad, v>``, tolerance
  :data:`NUMERIC_RTOL`. For a tensor of at most ``max_full`` entries, v runs over every basis
  vector (the full numeric gradient); for a larger one, v runs over ``directions`` random unit
  directions supported on that tensor, so checking a 20k x 50 embedding costs a few forward
  pairs, not a million.

**Relative error** of a pair (a, b) is ``|a - b| / max(|a|, |b|, floor)``. Without a floor,
entries that are zero up to round-off (a unit that happens to be nearly off) would report huge
relative errors that mean nothing. Hand-derived vs autodiff: the floor is :data:`REL_FLOOR` times
the tensor's largest gradient entry (both are exact, so only their round-off is compared).
Numeric vs either: :data:`REL_FLOOR` times the largest gradient entry of *all* tensors (for
directions: at least the tensor's gradient norm), because the round-off of a central difference,
about eps |J| / h, is the same for every tensor -- a tensor with small gradients (or exactly zero
ones: the score head's b when the true and the corrupt window switch on the same ReLU units)
would otherwise fail on noise alone.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbackprop import backprop, model

MANUAL_VS_AUTODIFF_RTOL = 1e-10
NUMERIC_RTOL = 1e-6
DEFAULT_STEP = 1e-5  # ~ (3 eps)^(1/3) in float64: balances truncation (h^2) and round-off (eps/h)
REL_FLOOR = 1e-3
# The checked models are tiny and each shape is checked once: XLA's optimisation passes cost
# seconds per program and save microseconds, so they are turned off for the checker's programs.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How far two gradients of one tensor are apart."""

    max_abs: float
    max_rel: float
    worst: tuple  # index of the worst relative error (coordinate, or (direction,))
    tol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel) and self.max_rel <= self.tol)


@dataclasses.dataclass(frozen=True)
class TensorCheck:
    """The three comparisons for one parameter tensor."""

    name: str
    shape: tuple
    probes: str  # "all N" or "k directions"
    grad_max: float  # largest |dJ/dtheta| entry: a zero gradient proves nothing
    manual_vs_autodiff: Comparison
    numeric_vs_manual: Comparison
    numeric_vs_autodiff: Comparison

    @property
    def passed(self) -> bool:
        return self.manual_vs_autodiff.passed and self.numeric_vs_manual.passed and self.numeric_vs_autodiff.passed


@dataclasses.dataclass(frozen=True)
class GradCheckResult:
    """Per-tensor report of one gradient check; ``str(result)`` is a readable table."""

    tensors: tuple
    label: str = ""
    error: str = ""  # the check could not compare: a gradient of the wrong shape, named (no tensors then)

    @property
    def passed(self) -> bool:
        return not self.error and all(t.passed for t in self.tensors)

    def __getitem__(self, name) -> TensorCheck:
        return next(t for t in self.tensors if t.name == name)

    def table(self) -> str:
        head = (
            f"{'tensor':<6} {'shape':<12} {'probes':<13} {'|grad|max':>9}  "
            f"{'manual~autodiff':^29}  {'numeric~manual':^29}  {'numeric~autodiff':^16}  ok"
        )
        cell = f"{'max abs':>9} {'max rel':>9} {'at':<9}"
        sub = f"{'':<43}  {cell}  {cell}  {'max rel':>9}"
        lines = [self.label] if self.label else []
        if self.error:
            return "\n".join(lines + [f"FAILED before any comparison: {self.error}"])
        lines += [head, sub]
        for t in self.tensors:
            m, n, a = t.manual_vs_autodiff, t.numeric_vs_manual, t.numeric_vs_autodiff
            lines.append(
                f"{t.name:<6} {str(t.shape):<12} {t.probes:<13} {t.grad_max:9.2e}  "
                f"{m.max_abs:9.1e} {m.max_rel:9.1e} {_fmt_index(m.worst):<9}  "
                f"{n.max_abs:9.1e} {n.max_rel:9.1e} {_fmt_index(n.worst):<9}  {a.max_rel:9.1e}  "
                f"{'yes' if t.passed else 'NO'}"
            )
        return "\n".join(lines)

    __str__ = table


def _fmt_index(index) -> str:
    return ",".join(str(i) for i in index) if index else "-"


def _compare(a, b, tol, floor_scale) -> Comparison:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = np.abs(a - b)
    floor = max(REL_FLOOR * floor_scale, np.finfo(np.float64).tiny)
    rel = diff / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
    if rel.size == 0:
        return Comparison(0.0, 0.0, (), tol)
    rel = np.where(np.isnan(rel), np.inf, rel)  # a NaN gradient is the worst possible error
    worst = np.unravel_index(int(np.argmax(rel)), rel.shape)
    return Comparison(float(np.max(diff)), float(np.max(rel)), tuple(int(i) for i in worst), tol)


def _central(J, theta, v, step):
    return (J(theta + step * v) - J(theta - step * v)) / (2 * step)


@functools.partial(jax.jit, static_argnames=("step", "cfg"), compiler_options=FAST_COMPILE)
def _numeric_coordinates(params, batch, key, flat_index, step, cfg):
    """dJ/dtheta_i by central differences for every flat index i, in one jitted loop."""
    theta, unravel = ravel_pytree(params)
    J = lambda t: model.loss(unravel(t), batch, cfg, key=key)  # noqa: E731
    return jax.lax.map(
        lambda i: _central(J, theta, jax.nn.one_hot(i, theta.shape[0], dtype=theta.dtype), step), flat_index
    )


@functools.partial(jax.jit, static_argnames=("name", "step", "cfg"), compiler_options=FAST_COMPILE)
def _numeric_directions(params, batch, key, directions, name, step, cfg):
    """Central differences of J along each row of ``directions`` (k, *shape of params[name])."""
    J = lambda t: model.loss({**params, name: t}, batch, cfg, key=key)  # noqa: E731
    return jax.lax.map(lambda v: _central(J, params[name], v, step), directions)


@functools.partial(jax.jit, static_argnames=("cfg", "value_and_grad"), compiler_options=FAST_COMPILE)
def _analytic(params, batch, key, cfg, value_and_grad):
    """The gradient under test and jax.grad's, side by side."""
    _, g_manual = value_and_grad(params, batch, cfg, key=key)
    return g_manual, jax.grad(model.loss)(params, batch, cfg, key=key)


def _unit_directions(rng, count, shape):
    v = rng.standard_normal((count, *shape))
    return v / np.linalg.norm(v.reshape(count, -1), axis=1).reshape((count,) + (1,) * len(shape))


def check_gradients(
    params,
    batch,
    cfg: model.ModelConfig,
    *,
    key=None,
    value_and_grad=backprop.manual_value_and_grad,
    max_full: int = 2048,
    directions: int = 8,
    step: float = DEFAULT_STEP,
    seed: int = 0,
    label: str = "",
) -> GradCheckResult:
    """Compare hand-derived, autodiff and numeric gradients of ``model.loss``, per tensor.

    Runs in float64 inside a scoped ``jax.enable_x64``; ``params`` and ``batch`` are copied,
    never mutated.

    Args:
      params, batch, cfg: as for :func:`jaxbackprop.loss`.
      key: dropout key (fixed masks, so the numeric differences see the same function).
      value_and_grad: the gradient under test, ``(params, batch, cfg, *, key) -> (J, grads)``;
        by default the hand-derived one. Pass a broken one to see the checker fail.
      max_full: tensors with at most this many entries are checked coordinate by coordinate.
      directions: random directions per larger tensor.
      step: h of the central difference.
      seed: seed of the random directions.
      label: a title for the printed table.

    Returns:
      A :class:`GradCheckResult`; ``.passed`` is True when every tensor is within tolerance.

    >>> import jax, jax.numpy as jnp
    >>> from jaxbackprop import ModelConfig, init_params
    >>> cfg = ModelConfig(vocab_size=12, embed_dim=3, window=3, hidden_dim=4, activation="tanh")
    >>> p = init_params(jax.random.key(0), cfg)
    >>> check_gradients(p, {"windows": jnp.array([[1, 2, 1]]), "labels": jnp.array([2])}, cfg).passed
    True
    """
    with jax.enable_x64(True):
        params64 = {k: jnp.array(v, dtype=jnp.float64) for k, v in params.items()}
        batch64 = {k: jnp.array(v) for k, v in batch.items()}
        if "weights" in batch64:
            batch64["weights"] = batch64["weights"].astype(jnp.float64)
        model.validate_batch(batch64, cfg)
        g_manual, g_auto = jax.device_get(_analytic(params64, batch64, key, cfg, value_and_grad))
        _check_structure(g_manual, params64, label)  # before any arithmetic: a wrong shape names its tensor
        names = sorted(params64)
        sizes = [int(np.prod(params64[k].shape)) for k in names]
        offsets = dict(zip(names, np.cumsum([0] + sizes[:-1])))
        full = [k for k, n in zip(names, sizes) if n <= max_full]
        flat_index = np.concatenate([offsets[k] + np.arange(params64[k].size) for k in full] or [np.zeros(0, int)])
        coords = np.zeros(0)
        if len(flat_index):
            coords = np.asarray(_numeric_coordinates(params64, batch64, key, flat_index, step, cfg))
        rng = np.random.default_rng(seed)
        overall = max((float(np.max(np.abs(g))) for g in g_auto.values() if np.size(g)), default=0.0)
        rows, start = [], 0
        for k in names:
            if k in full:
                num = coords[start : start + params64[k].size].reshape(params64[k].shape)
                start += params64[k].size
                rows.append(_full_check(k, num, g_manual[k], g_auto[k], overall))
            else:
                v = _unit_directions(rng, directions, params64[k].shape)
                num = np.asarray(_numeric_directions(params64, batch64, key, jnp.asarray(v), k, step, cfg))
                rows.append(_directional_check(k, num, v, g_manual[k], g_auto[k], overall))
        return GradCheckResult(tuple(rows), label)


def _check_structure(grads, params, label=""):  # the label says which check of a matrix failed
    if not isinstance(grads, dict) or set(grads) != set(params):
        keys = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
        raise backprop.GradientShapeError(
            f"{label and label + ': '}gradient keys {keys} differ from parameter keys {sorted(params)}"
        )
    for k in sorted(params):
        if np.shape(grads[k]) != params[k].shape:
            shapes = f"gradient of {k!r} has shape {np.shape(grads[k])}, parameter has {params[k].shape}"
            raise backprop.GradientShapeError(f"{label and label + ': '}{shapes}")


def _full_check(name, numeric, g_manual, g_auto, overall) -> TensorCheck:
    gm, ga = np.asarray(g_manual), np.asarray(g_auto)
    scale = float(np.max(np.abs(ga))) if ga.size else 0.0
    numeric_scale = max(scale, overall)  # a difference's round-off does not shrink with the tensor
    manual_vs_autodiff = _compare(gm, ga, MANUAL_VS_AUTODIFF_RTOL, scale)
    numeric_vs = [_compare(numeric, g, NUMERIC_RTOL, numeric_scale) for g in (gm, ga)]
    return TensorCheck(name, gm.shape, f"all {gm.size}", scale, manual_vs_autodiff, *numeric_vs)


def _directional_check(name, numeric, directions, g_manual, g_auto, overall) -> TensorCheck:
    gm, ga = np.asarray(g_manual), np.asarray(g_auto)
    scale = float(np.max(np.abs(ga)))
    flat_v = directions.reshape(len(directions), -1)
    # |<g, v>| <= ||g|| for a unit v, so the norm sets the scale of a directional derivative
    norm = max(float(np.linalg.norm(ga)), overall)
    manual_vs_autodiff = _compare(gm, ga, MANUAL_VS_AUTODIFF_RTOL, scale)
    numeric_vs = [_compare(numeric, flat_v @ g.ravel(), NUMERIC_RTOL, norm) for g in (gm, ga)]
    return TensorCheck(name, gm.shape, f"{len(directions)} directions", scale, manual_vs_autodiff, *numeric_vs)
