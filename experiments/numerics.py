"""The numerics of the measuring experiments: timing medians, round-off tolerances, log-log
slopes, finite differences over flattened parameters, and their error slopes (E02, E03, E10)."""

from __future__ import annotations

import functools
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbackprop import model


def time_round_robin(fns: dict, *, repeats: int, min_time: float = 0.02, warmup: int = 2) -> dict:
    """Median seconds per call of each ``fn`` (which must block until its result is ready).

    Each fn is warmed up (``warmup`` calls: compiles and caches settle), then ``repeats`` rounds run
    one repeat of every fn in turn, so load from other processes on a shared machine lands on all
    of them alike. A repeat calls the fn often enough to last ``min_time``.

    Returns:
      ``{name: {"median_s", "q1_s", "q3_s", "calls_per_repeat", "repeats", "times_s"}}``; ``times_s``
      holds every repeat's seconds per call, in round order, so two fns can be compared round by round.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    calls = {name: _calls_for(fn, min_time) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - t) / calls[name])
    out = {}
    for name, ts in times.items():
        q1, q3 = np.percentile(ts, [25, 75])
        out[name] = {"median_s": statistics.median(ts), "q1_s": float(q1), "q3_s": float(q3)}
        out[name].update(calls_per_repeat=calls[name], repeats=repeats, times_s=ts)
    return out


def _calls_for(fn, min_time: float) -> int:
    t = time.perf_counter()
    fn()
    return max(1, math.ceil(min_time / max(time.perf_counter() - t, 1e-7)))


def roundoff_tolerance(dtype, n_terms: int, scale: float, k: float = 4.0, worst_case: bool = False) -> float:
    """How far two evaluations of the same sum may differ in ``dtype``: ``k eps sqrt(n_terms) scale``.

    Two code paths add the same ``n_terms`` terms of magnitude up to ``scale`` in different orders.
    Each addition rounds to within eps/2, so they differ by at most about ``eps n_terms scale``
    (``worst_case=True``; Higham, *Accuracy and Stability of Numerical Algorithms*, 4.2); errors of
    random sign grow like a random walk, ``eps sqrt(n_terms) scale`` (the default). ``k``: safety.

    >>> f"{roundoff_tolerance(np.float32, 100, 1.0):.2e}"
    '4.77e-06'
    """
    growth = n_terms if worst_case else math.sqrt(n_terms)
    return k * float(np.finfo(dtype).eps) * max(growth, 1.0) * scale


def loglog_slope(x, y) -> float:
    """Least-squares slope of log10(y) against log10(x): the power p in y ~ x^p.

    >>> round(loglog_slope([1, 10, 100], [3, 300, 30000]), 6)
    2.0
    """
    x, y = np.log10(np.asarray(x, float)), np.log10(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0])


@functools.partial(jax.jit, static_argnames="cfg")
def losses_at(thetas, params, batch, cfg):
    """J at every row of ``thetas`` (flattened parameters), one after another (lax.map)."""
    unravel = ravel_pytree(params)[1]
    return jax.lax.map(lambda t: model.loss(unravel(t), batch, cfg), thetas)


def flat_index(params, name: str, index: tuple) -> int:
    """Position of ``params[name][index]`` in ``ravel_pytree(params)`` (a dict flattens in sorted key order)."""
    offset = 0
    for k in sorted(params):
        if k == name:
            return offset + int(np.ravel_multi_index(index, params[k].shape))
        offset += params[k].size
    raise KeyError(name)


@functools.partial(jax.jit, static_argnames=("cfg", "h"))
def numeric_gradient(params, batch, cfg, h):
    """The full central-difference gradient: coordinate i set to t_i + h, then t_i - h, then back
    to t_i exactly, in place, in one jitted loop: 2P forward passes and little else."""
    theta0, unravel = ravel_pytree(params)
    J = lambda t: model.loss(unravel(t), batch, cfg)  # noqa: E731

    def body(i, carry):  # theta is updated in place and restored exactly: no O(P) copy per pass
        theta, g = carry
        theta = theta.at[i].set(theta0[i] + h)
        up = J(theta)
        theta = theta.at[i].set(theta0[i] - h)
        down = J(theta)
        return theta.at[i].set(theta0[i]), g.at[i].set((up - down) / (2 * h))

    return unravel(jax.lax.fori_loop(0, theta0.size, body, (theta0, jnp.zeros_like(theta0)))[1])


def looped(fn):
    """``fn(params, batch, cfg)`` over K batches in one jitted loop, outputs summed: no dispatch per pass."""

    @functools.partial(jax.jit, static_argnames="cfg")
    def loop(params, windows, labels, cfg):
        one = lambda i: fn(params, {"windows": windows[i], "labels": labels[i]}, cfg)  # noqa: E731
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(one, 0))
        return jax.lax.fori_loop(0, windows.shape[0], lambda i, acc: jax.tree.map(jnp.add, acc, one(i)), zeros)

    return loop


def pick_coordinates(rng, grad, k: int, rows=None) -> list:
    """k coordinates whose |gradient| is above the tensor's median (so a relative error means something)."""
    g, allowed = np.abs(grad), np.zeros(grad.shape, bool)
    allowed[... if rows is None else rows] = True
    candidates = np.argwhere(allowed & (g >= np.median(g[allowed])) & (g > 0))
    return [tuple(map(int, i)) for i in candidates[rng.choice(len(candidates), k, replace=False)]]


def error_slopes(hs, med) -> dict:
    """Slopes of log(error) vs log(h): truncation region h in [10 h_opt, 1e-2], round-off h <= h_opt / 10."""
    h_opt = float(hs[int(np.argmin(med))])
    trunc = (hs >= 10 * h_opt * (1 - 1e-9)) & (hs <= 1e-2 * (1 + 1e-9))
    rnd = (hs <= h_opt / 10 * (1 + 1e-9)) & (med > 0)
    return {
        "median_rel_error": med,
        "h_opt": h_opt,
        "min_median_rel_error": float(med.min()),
        "truncation_range": [float(hs[trunc].min()), float(hs[trunc].max())] if trunc.any() else None,
        "truncation_slope": loglog_slope(hs[trunc], med[trunc]) if trunc.sum() >= 2 else float("nan"),
        "roundoff_slope": loglog_slope(hs[rnd], med[rnd]) if rnd.sum() >= 2 else float("nan"),
        "rel_error_at_1e-4": float(np.interp(-4, np.log10(hs[::-1]), med[::-1])),
    }
