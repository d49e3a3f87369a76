"""E02: numeric gradients -- one- vs two-sided differences, and their cost against backprop.

Settings, command and expected result: configs/e02.py; the prose: templates/e02.md.
(a) the relative error of (f(t+h) - f(t))/h and (f(t+h) - f(t-h))/2h against the hand-derived
gradient, for h from 1e-1 to 1e-12; (b) seconds of a forward pass, a backprop pass and a full
numeric gradient (2P forward passes, one jitted loop) as the parameter count P grows.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, result_head, verdict_of, write_result
from configs import base, e02
from figures import e02 as figure
from numerics import (
    error_slopes,
    flat_index,
    loglog_slope,
    looped,
    losses_at,
    numeric_gradient,
    pick_coordinates,
    time_round_robin,
)
from problems import gradient_check_problem

from jaxbackprop import backprop, model

NAME = "e02_gradient_checks"
CLAIM = "two-sided differences beat one-sided (O(h^2) vs O(h)), accurate at h~1e-4; a numeric gradient costs 2P passes"
EPS64 = float(np.finfo(np.float64).eps)
value_and_grad = jax.jit(backprop.manual_value_and_grad, static_argnames="cfg")


def difference_errors(config: e02.Config) -> dict:
    """(a) Relative error of one- and two-sided differences at chosen coordinates of W and E."""
    c = config
    model_cfg, params, _, batch = gradient_check_problem(c.vocab_size, c.embed_dim, c.hidden_dim, c.batch_size, c.seed)
    grads = jax.device_get(value_and_grad(params, batch, model_cfg)[1])
    rng = np.random.default_rng(c.seed)
    coords = [("W", i) for i in pick_coordinates(rng, grads["W"], c.coords_per_tensor)]
    in_batch = np.unique(batch["windows"])  # E: only rows of words in the batch have a gradient
    coords += [("E", i) for i in pick_coordinates(rng, grads["E"], c.coords_per_tensor, in_batch)]
    hs = np.logspace(-1, -12, 11 * c.h_per_decade + 1)
    theta = np.asarray(ravel_pytree(params)[0])
    thetas = [theta]
    for name, index in coords:  # theta + h e_i for every h, then theta - h e_i for every h
        i = flat_index(params, name, index)
        thetas += [theta + np.where(np.arange(theta.size) == i, sign * h, 0.0) for sign in (1.0, -1.0) for h in hs]
    J = np.asarray(losses_at(jnp.asarray(np.stack(thetas)), params, batch, model_cfg))
    f0, J = J[0], J[1:].reshape(len(coords), 2, len(hs))
    exact = np.array([grads[name][index] for name, index in coords])[:, None]
    out = {
        "model": dataclasses.asdict(model_cfg),
        "h": hs,
        "coordinates": [{"tensor": n, "index": i} for n, i in coords],
    }
    one, two = (J[:, 0] - f0) / hs, (J[:, 0] - J[:, 1]) / (2 * hs)
    for label, estimate, theory in (("one_sided", one, EPS64**0.5), ("two_sided", two, EPS64 ** (1 / 3))):
        rel = np.abs(estimate - exact) / np.abs(exact)
        out[label] = {"rel_error": rel, **error_slopes(hs, np.median(rel, axis=0)), "h_opt_theory": theory}
    return out


LOOPS = {
    "forward_loop": looped(model.loss),
    "backprop_loop": looped(backprop.manual_value_and_grad),
    "backprop_rows_loop": looped(backprop.manual_value_and_row_grads),
}


RATIOS = (("backprop_loop", "forward_loop"), ("backprop_rows_loop", "forward_loop"), ("backprop_call", "forward_call"))
RATIOS += (("numeric", "backprop_loop"), ("numeric", "backprop_call"))


def cost_table(config: e02.Config) -> list:
    """(b) Median seconds of each pass at each vocabulary size (loops: per pass), all timed round-robin."""
    c, fns, sizes, numeric = config, {}, {}, {}
    call = lambda f, *a: lambda: jax.block_until_ready(f(*a))  # noqa: E731
    for V in c.vocab_sizes:
        model_cfg, params, batches, batch = gradient_check_problem(
            V, c.cost_embed_dim, c.cost_hidden_dim, c.cost_batch_size, c.seed, c.loop_batches
        )
        fns |= {(V, k): call(loop, params, *batches, model_cfg) for k, loop in LOOPS.items()}
        fns[V, "forward_call"] = call(jax.jit(model.loss, static_argnames="cfg"), params, batch, model_cfg)
        fns[V, "backprop_call"] = call(value_and_grad, params, batch, model_cfg)
        numeric[V, "numeric"] = call(numeric_gradient, params, batch, model_cfg, c.step)
        num, exact = numeric_gradient(params, batch, model_cfg, c.step), value_and_grad(params, batch, model_cfg)[1]
        worst = max(float(jnp.max(jnp.abs(num[k] - exact[k])) / jnp.max(jnp.abs(exact[k]))) for k in params)
        sizes[V] = {"P": int(sum(v.size for v in params.values())), "numeric_vs_manual_rel": worst}
    t = time_round_robin(fns, repeats=c.repeats)
    t |= time_round_robin(numeric, repeats=c.numeric_repeats, min_time=0, warmup=1)
    rows = []
    for V, row in sizes.items():
        timing = {k: v for (v_, k), v in t.items() if v_ == V}
        sec = {k: v["median_s"] / (c.loop_batches if k in LOOPS else 1) for k, v in timing.items()}
        ratios = {f"{a}/{b}": sec[a] / sec[b] for a, b in RATIOS}
        ratios["numeric_pass/forward_loop"] = sec["numeric"] / (2 * row["P"]) / sec["forward_loop"]
        rows.append(
            {"V": V, **row, "seconds": sec, "forward_us": 1e6 * sec["forward_loop"], "timing": timing, "ratios": ratios}
        )
    return rows


def judge(accuracy: dict, rows: list, growth: float) -> dict:
    one, two = accuracy["one_sided"], accuracy["two_sided"]
    ratios = [r["ratios"]["backprop_loop/forward_loop"] for r in rows]
    return {
        "accuracy": abs(one["truncation_slope"] - 1) <= 0.25
        and abs(two["truncation_slope"] - 2) <= 0.35
        and two["min_median_rel_error"] < one["min_median_rel_error"],
        "cost": max(ratios) <= 5 and 0.7 <= growth <= 1.3,
        "several_sizes": len(rows) > 1,
        "backprop_over_forward": [min(ratios), max(ratios)],
        "dense_E_costs": any(
            r["ratios"]["backprop_loop/forward_loop"] > 1.5 * r["ratios"]["backprop_rows_loop/forward_loop"]
            for r in rows
        ),
        "numeric_vs_manual_rel": max(r["numeric_vs_manual_rel"] for r in rows),
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv)
    config = base.select(e02, quick=args.quick)
    with jax.enable_x64(True):
        accuracy, cost = difference_errors(config), cost_table(config)
    P, ratio = [r["P"] for r in cost], [r["ratios"]["numeric/backprop_loop"] for r in cost]
    growth = loglog_slope(P, ratio) if len(cost) > 1 else float("nan")
    checks = judge(accuracy, cost, growth)
    verdict = verdict_of([checks["accuracy"], checks["cost"]])
    result = {**result_head(NAME, CLAIM, config), "accuracy": accuracy, "cost": cost}
    result.update(numeric_over_backprop_slope=growth, checks=checks, verdict=verdict, seeds=[config.seed])
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
