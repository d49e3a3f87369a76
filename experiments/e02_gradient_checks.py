"""E02: numeric gradients -- one- vs two-sided differences, and their cost against backprop.

Settings, command and expected result: configs/e02.py; the prose: templates/e02.md.
(a) the relative error of (f(t+h) - f(t))/h and (f(t+h) - f(t-h))/2h against the hand-derived
gradient, for h from 1e-1 to 1e-12; (b) seconds of a forward pass, a backprop pass and a full
numeric gradient (2P forward passes, one jitted loop) as the parameter count P grows with V; (c) a
forward and a backprop pass as H, B and d grow, the sizes the forward pass's cost depends on.
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


SCALED = {"H": "hidden units H", "B": "batch size B", "d": "word-vector width d"}


def scaling_table(config: e02.Config) -> list:
    """(c) Forward and backprop seconds per pass as H, B or d grows alone (the forward pass is O(B n d H)).

    All points timed round-robin in one go; each row holds the medians and the quartiles of its repeats.
    """
    c, fns, points = config, {}, []
    call = lambda f, *a: lambda: jax.block_until_ready(f(*a))  # noqa: E731
    for axis in SCALED:
        for f in c.scale_factors:
            size = {"d": c.cost_embed_dim, "H": c.cost_hidden_dim, "B": c.cost_batch_size}
            size[axis] *= f
            model_cfg, params, batches, _ = gradient_check_problem(
                c.scale_vocab, size["d"], size["H"], size["B"], c.seed, c.loop_batches
            )
            for k, loop in LOOPS.items():
                fns[axis, f, k] = call(loop, params, *batches, model_cfg)
            points.append({"axis": axis, "factor": f, **size, "P": int(sum(v.size for v in params.values()))})
    t = time_round_robin(fns, repeats=c.repeats)
    for row in points:
        mine = {k: t[row["axis"], row["factor"], k] for k in LOOPS}
        row["us"] = {k: 1e6 * v["median_s"] / c.loop_batches for k, v in mine.items()}
        row["quartiles_us"] = {k: [1e6 * v[q] / c.loop_batches for q in ("q1_s", "q3_s")] for k, v in mine.items()}
        row["backprop/forward"] = row["us"]["backprop_loop"] / row["us"]["forward_loop"]
        row["backprop_rows/forward"] = row["us"]["backprop_rows_loop"] / row["us"]["forward_loop"]
    return points


def scaling_summary(points: list, config: e02.Config) -> dict:
    """Per axis: how much the forward pass grew, backprop/forward's range, the log-log slope of backprop on forward."""
    out = {}
    for axis in SCALED:
        mine = [p for p in points if p["axis"] == axis]
        fwd = [p["us"]["forward_loop"] for p in mine]
        ratios = [p[k] for p in mine for k in ("backprop/forward", "backprop_rows/forward")]
        slope = loglog_slope(fwd, [p["us"]["backprop_rows_loop"] for p in mine]) if len(mine) > 1 else None
        out[axis] = {"forward_growth": fwd[-1] / fwd[0], "ratio_min": min(ratios), "ratio_max": max(ratios)}
        out[axis]["backprop_on_forward_slope"] = slope
    out["within_bar"] = all(out[a]["ratio_max"] <= config.ratio_bar for a in SCALED)
    return out


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
        accuracy, cost, scaling = difference_errors(config), cost_table(config), scaling_table(config)
    P, ratio = [r["P"] for r in cost], [r["ratios"]["numeric/backprop_loop"] for r in cost]
    growth = loglog_slope(P, ratio) if len(cost) > 1 else float("nan")
    checks = judge(accuracy, cost, growth)
    scaled = scaling_summary(scaling, config)
    checks["scaling"] = scaled["within_bar"]
    verdict = verdict_of([checks["accuracy"], checks["cost"], checks["scaling"]])
    result = {**result_head(NAME, CLAIM, config), "accuracy": accuracy, "cost": cost}
    result.update(scaling=scaling, scaling_summary=scaled)
    result.update(numeric_over_backprop_slope=growth, checks=checks, verdict=verdict, seeds=[config.seed])
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
