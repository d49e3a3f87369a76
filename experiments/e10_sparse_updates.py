"""E10: an SGD step changes only the embedding rows of the words in the batch; a repeated word gets both updates.

Settings, command and expected result: configs/e10.py; the prose: templates/e10.md.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, result_head, verdict_of, write_result
from configs import base, e10
from figures import e10 as figure
from numerics import roundoff_tolerance
from problems import sgd_step, sparse_step_problem

from jaxbackprop import manual_value_and_grad, sparse

NAME = "e10_sparse_updates"
CLAIM = "an SGD step moves only the embedding rows of words in the batch; a word twice in a window gets both updates"
value_and_grad = jax.jit(manual_value_and_grad, static_argnames="cfg")


def changed_rows(config: e10.Config, V: int) -> dict:
    """After one dense SGD step (float32), which rows of E moved, against the rows in the batch."""
    model_cfg, params, batch = sparse_step_problem(config, V)
    grads = value_and_grad(params, batch, model_cfg)[1]
    new = sgd_step(params, grads, config.learning_rate)
    E0, E1, gE = (np.asarray(a) for a in (params["E"], new["E"], grads["E"]))
    moved, in_batch = np.flatnonzero(np.any(E1 != E0, axis=1)), np.unique(batch["windows"])
    outside = np.setdiff1d(np.arange(V), in_batch)
    return {
        "V": V,
        "batch_positions": int(batch["windows"].size),
        "batch_rows": len(in_batch),
        "changed_rows": len(moved),
        "changed_equals_batch": bool(np.array_equal(moved, in_batch)),
        "nonzero_gradient_rows": int(np.sum(np.any(gE != 0, axis=1))),
        "outside_rows": len(outside),
        "outside_rows_bit_identical": bool(np.array_equal(E1[outside], E0[outside])),
        "other_tensors_changed": all(bool(np.any(new[k] != params[k])) for k in params if k != "E"),
        "row_change_norm": np.linalg.norm(E1 - E0, axis=1),  # (V,), for the plot
        "batch_ids": in_batch,
    }


def repeated_word(config: e10.Config, V: int) -> dict:
    """The word twice in window 0, vs the same model with its 2nd occurrence a new id (row V, a copy)."""
    model_cfg, params, batch = sparse_step_problem(config, V)
    a, lr = int(batch["windows"][0, 0]), config.learning_rate
    params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    twin = {**params, "E": jnp.concatenate([params["E"], params["E"][a][None, :]], axis=0)}
    twin_batch = {**batch, "windows": batch["windows"].copy()}
    twin_batch["windows"][0, 2] = V
    J, g = value_and_grad(params, batch, model_cfg)
    J_b, g_b = value_and_grad(twin, twin_batch, dataclasses.replace(model_cfg, vocab_size=V + 1))
    E0 = np.asarray(params["E"][a])
    twice = np.asarray(sgd_step(params, g, lr)["E"][a]) - E0
    first, second = (np.asarray(sgd_step(twin, g_b, lr)["E"][i]) - E0 for i in (a, V))
    total, scale = first + second, float(np.max(np.abs(first + second)))
    # three float64 roundings of E0 - lr g at |E0|'s scale, plus each gradient row: a sum of H
    # products (W^T delta), added in the scatter in one order and here in another
    tol = roundoff_tolerance(np.float64, 1, 3 * float(np.max(np.abs(E0))))
    tol += roundoff_tolerance(np.float64, config.hidden_dim, lr * float(np.max(np.abs(np.asarray(g["E"])[a]))))
    return {
        "word": a,
        "change_twice": twice,
        "change_first_slot": first,
        "change_second_slot": second,
        "norms": {k: float(np.linalg.norm(v)) for k, v in zip(("twice", "first", "second"), (twice, first, second))},
        "max_abs_diff_vs_sum": float(np.max(np.abs(twice - total))),
        "rel_diff_vs_sum": float(np.max(np.abs(twice - total))) / scale,
        "tolerance": tol,
        "tolerance_rel": tol / scale,
        "rel_diff_if_only_second": float(np.max(np.abs(twice - second))) / scale,  # assignment, not scatter-add
        "loss_abs_diff": abs(float(J - J_b)),
        "W_grad_max_abs_diff": float(np.max(np.abs(g["W"] - g_b["W"]))),
    }


def rows_only_step(config: e10.Config, V: int) -> dict:
    """``sparse.make_sparse_step``'s rows-only SGD step against the dense step, float32.

    The two compute the same numbers along different code paths, so may round differently:
    tensor k may differ by ``tolerance[k]``, derived from float32's epsilon. Rows no id touches
    must be bit-identical: that is the claim.
    """
    model_cfg, params, batch = sparse_step_problem(config, V)
    lr = config.learning_rate
    grads = value_and_grad(params, batch, model_cfg)[1]
    dense = sgd_step(params, grads, lr)
    init, step = sparse.make_sparse_step(model_cfg, optax.sgd(lr), "sgd", lr, donate=False)
    rows = step(params, init(params), batch, None)[0]
    # p - lr g in two programs: one rounding each of |p_new|, and each gradient entry a sum of at
    # most B n H products (dJ/dE of a row in every position) added in another order
    n_terms = config.batch_size * config.window * config.hidden_dim
    tensors = {}
    for k in params:
        tol = roundoff_tolerance(np.float32, 1, float(jnp.max(jnp.abs(dense[k]))))
        tol += roundoff_tolerance(np.float32, n_terms, lr * float(jnp.max(jnp.abs(grads[k]))))
        diff = float(jnp.max(jnp.abs(rows[k] - dense[k])))
        tensors[k] = {"max_abs_diff": diff, "tolerance": tol, "within_tolerance": diff <= tol}
        tensors[k]["bit_identical"] = bool(jnp.array_equal(rows[k], dense[k]))
    outside = np.setdiff1d(np.arange(V), np.unique(batch["windows"]))
    out = {"V": V, "tensors": tensors, "E_max_abs_change": float(jnp.max(jnp.abs(dense["E"] - params["E"])))}
    return out | {"outside_rows_bit_identical": bool(np.array_equal(rows["E"][outside], params["E"][outside]))}


DENSE_RULES = {"adagrad": optax.adagrad, "adam": optax.adam}


def several_steps(config: e10.Config, V: int, rule: str, lr: float, every_row: bool = False) -> dict:
    """``steps`` rows-only updates of ``rule`` (sparse.RULES) against optax's dense rule, float64.

    Each step draws a new batch (with ``every_row``, every word is in every batch). Rows no batch
    named must keep their bits in both; the rows-only rule must leave a row absent from the current
    batch untouched, while dense Adam moves it along its stale momentum (Adagrad: its g = 0 moves
    nothing, so the two are the same rule). Where the rules agree by design the parameters must
    agree to float64 round-off, accumulated over the steps.
    """
    model_cfg, params, _ = sparse_step_problem(config, V)
    params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    rng = np.random.default_rng(config.seed + 1)
    batches = []
    for _ in range(config.steps):
        windows = rng.integers(0, V, (config.batch_size, config.window), dtype=np.int32)
        if every_row:
            windows.reshape(-1)[:V] = rng.permutation(V)
        batches.append({"windows": windows, "labels": rng.integers(0, 5, config.batch_size, dtype=np.int32)})
    dense_tx = DENSE_RULES[rule](lr)
    init, rows_step = sparse.make_sparse_step(model_cfg, dense_tx, rule, lr, donate=False)

    @jax.jit
    def dense_step(p, state, batch):
        grads = manual_value_and_grad(p, batch, model_cfg)[1]
        updates, state = dense_tx.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    rows_p, rows_state, dense_p, dense_state = params, init(params), params, dense_tx.init(params)
    seen = np.zeros(V, bool)
    moved_absent = {"rows_only": 0, "dense": 0}
    for batch in batches:
        here = np.zeros(V, bool)
        here[np.unique(batch["windows"])] = True
        before = {"rows_only": np.asarray(rows_p["E"]), "dense": np.asarray(dense_p["E"])}
        rows_p, rows_state = rows_step(rows_p, rows_state, batch, None)[:2]
        dense_p, dense_state = dense_step(dense_p, dense_state, batch)
        after = {"rows_only": np.asarray(rows_p["E"]), "dense": np.asarray(dense_p["E"])}
        for k in moved_absent:  # rows seen before, absent now, that moved in this step
            moved_absent[k] += int(np.sum(np.any(after[k] != before[k], axis=1) & ~here & seen))
        seen |= here
    never = ~seen
    diff = {k: float(jnp.max(jnp.abs(rows_p[k] - dense_p[k]))) for k in params}
    change = max(float(jnp.max(jnp.abs(dense_p[k] - params[k]))) for k in params)
    # per step: the update's rounding at the scale of the largest change, and each gradient entry a sum of
    # B n H products in another order; summed over the steps
    n_terms = config.batch_size * config.window * config.hidden_dim
    tol = config.steps * (roundoff_tolerance(np.float64, n_terms, change) + roundoff_tolerance(np.float64, 1, 1.0))
    return {
        "rule": rule,
        "learning_rate": lr,
        "V": V,
        "steps": config.steps,
        "every_row_in_every_batch": every_row,
        "rows_never_in_a_batch": int(never.sum()),
        "never_rows_bit_identical": bool(
            np.array_equal(np.asarray(rows_p["E"])[never], np.asarray(params["E"])[never])
            and np.array_equal(np.asarray(dense_p["E"])[never], np.asarray(params["E"])[never])
        ),
        "rows_moved_while_absent": moved_absent,
        "max_abs_diff": diff,
        "largest_change": change,
        "tolerance": tol,
        "equal_to_roundoff": max(diff.values()) <= tol,
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv)
    config = base.select(e10, quick=args.quick)
    changed = [changed_rows(config, V) for V in config.vocab_sizes]
    for c in changed[1:]:  # only the first size is plotted: keep result.json small
        del c["row_change_norm"], c["batch_ids"]
    with jax.enable_x64(True):
        repeated = repeated_word(config, config.vocab_sizes[0])
    sparse_check = rows_only_step(config, config.vocab_sizes[0])
    with jax.enable_x64(True):
        V = config.vocab_sizes[0]
        stateful = [several_steps(config, V, rule, lr) for rule, lr in config.rule_rates]
        stateful += [several_steps(config, config.dense_vocab, "adam", dict(config.rule_rates)["adam"], True)]
    by = {(r["rule"], r["every_row_in_every_batch"]): r for r in stateful}
    checks = {
        "rows": all(c["changed_equals_batch"] and c["outside_rows_bit_identical"] for c in changed),
        # the repeated word's change is the sum to round-off, and keeping one slot only is off by far more
        "repeat": repeated["max_abs_diff_vs_sum"] <= repeated["tolerance"]
        and repeated["rel_diff_if_only_second"] > 1e-3,
        "sparse": all(t["within_tolerance"] for t in sparse_check["tensors"].values())
        and sparse_check["outside_rows_bit_identical"],
        # several steps: untouched rows keep their bits under every rule; rows-only Adagrad is dense Adagrad;
        # lazy Adam never moves an absent row (dense Adam does) and is dense Adam when every row is in every batch
        "stateful": all(
            r["never_rows_bit_identical"] and r["rows_moved_while_absent"]["rows_only"] == 0 for r in stateful
        )
        and by["adagrad", False]["equal_to_roundoff"]
        and by["adam", False]["rows_moved_while_absent"]["dense"] > 0
        and by["adam", True]["equal_to_roundoff"],
    }
    verdict = verdict_of(checks.values())
    result = {**result_head(NAME, CLAIM, config), "changed": changed, "repeated": repeated}
    result.update(rows_only_step=sparse_check, several_steps=stateful, checks=checks, verdict=verdict)
    result["seeds"] = [config.seed]
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
