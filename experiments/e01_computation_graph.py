"""E01: the lecture's worked example f(x, y, z) = (x + y) max(y, z), run on the graph engine.

Settings, command and expected result: configs/e01.py; the prose: templates/e01.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, result_head, write_result
from configs import base, e01
from figures import e01 as figure

from jaxbackprop.graph import Node, add, maximum, mul
from jaxbackprop.graph_demo import lecture_example

NAME = "e01_computation_graph"
CLAIM = (
    "backprop on f=(x+y)max(y,z) at (1,2,0) gives (2,5,0); y->2.1 moves f by ~0.5; +, max, * distribute, route, switch"
)


def f_jax(x, y, z):
    """The same function in plain jax.numpy, for jax.grad as an independent reference."""
    return (x + y) * jnp.maximum(y, z)


def sent_through(op, a_value, b_value, upstream):
    """What a binary node sends to each input: ``op`` on fresh leaves, backward from upstream * out."""
    a, b = Node(a_value, name="a"), Node(b_value, name="b")
    mul(op(a, b), float(upstream)).backward()  # d(upstream * out)/d(input) = upstream * local
    return float(a.grad), float(b.grad)


def measure(config: e01.Config) -> dict:
    """Forward values, gradients, wiggles and the three patterns, all in float64."""
    inputs = (config.x, config.y, config.z)
    g = lecture_example(*inputs)
    values = {k: float(n.value) for k, n in g.items()}
    grads = {k: float(n.grad) for k, n in g.items()}
    f_at = lambda *v: float(lecture_example(*v)["f"].value)  # noqa: E731
    wiggles = {}
    for i, name in enumerate("xyz"):
        nudged = [[v + (h if j == i else 0.0) for j, v in enumerate(inputs)] for h in config.wiggles]
        deltas = [f_at(*v) - values["f"] for v in nudged]
        wiggles[name] = [{"h": h, "delta_f": d, "slope": d / h} for h, d in zip(config.wiggles, deltas)]
    plus_x, plus_y = sent_through(add, values["x"], values["y"], grads["a"])
    max_y, max_z = sent_through(maximum, values["y"], values["z"], grads["b"])
    mul_a, mul_b = sent_through(mul, values["a"], values["b"], grads["f"])
    return {
        "values": values,
        "grads": [grads[k] for k in "xyz"],
        "grads_intermediate": {k: grads[k] for k in "abf"},
        "jax_grads": [float(v) for v in jax.grad(f_jax, argnums=(0, 1, 2))(*inputs)],
        "wiggle": {
            "y_from": config.y,
            "y_to": config.y + config.wiggle,
            "delta_f": f_at(config.x, config.y + config.wiggle, config.z) - values["f"],
            "predicted": config.wiggle * grads["y"],
        },
        "wiggles": wiggles,
        "patterns": {
            "plus_distributes": {"upstream": grads["a"], "to_x": plus_x, "to_y": plus_y},
            "max_routes": {"upstream": grads["b"], "to_y": max_y, "to_z": max_z},
            "times_switches": {
                "upstream": grads["f"],
                "to_a": mul_a,
                "to_b": mul_b,
                "a": values["a"],
                "b": values["b"],
            },
        },
        "y_branches": {"via_plus": plus_y, "via_max": max_y, "sum": plus_y + max_y},
    }


def judge(m: dict) -> dict:
    p, w = m["patterns"], m["wiggle"]
    plus, route, switch = p["plus_distributes"], p["max_routes"], p["times_switches"]
    return {
        "grads_exact": m["grads"] == [2.0, 5.0, 0.0] and m["jax_grads"] == m["grads"],
        "wiggle_as_predicted": abs(w["delta_f"] - w["predicted"]) <= 0.02 + 1e-9,  # 0.51 vs 0.5: the h^2 term
        "patterns_hold": plus["to_x"] == plus["to_y"] == plus["upstream"]
        and route["to_z"] == 0.0
        and route["to_y"] == route["upstream"]
        and switch["to_a"] == switch["b"]
        and switch["to_b"] == switch["a"],
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv)
    config = base.select(e01, quick=args.quick)
    with jax.enable_x64(True):
        m = measure(config)
    checks = judge(m)
    verdict = "supported" if all(checks.values()) else "not supported"
    result = {**result_head(NAME, CLAIM, config), **m, "checks": checks}
    result.update(verdict=verdict, seeds=[], plots=figure.draw(result, args.out))
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
