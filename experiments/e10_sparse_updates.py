"""E10: an SGD step changes only the embedding rows of the words in the batch, and a repeated word
gets both of its updates.

Claims: dJ/dE is zero on every row whose word is not in the batch, so a step
``E <- E - lr dJ/dE`` moves only those rows (the lecture: "only update the word vectors that
appear in the batch"); and a word that occurs twice in a window receives the sum of the two
gradients of its two slices of x (the gradients of a node used twice add).

    python experiments/e10_sparse_updates.py            # ~25 s (--quick's size plus V = 20,000)
    python experiments/e10_sparse_updates.py --quick    # a few seconds

Expected: changed rows == distinct ids in the batch, every other row bit-identical; the repeated
word's change equals, to round-off, the sum of the changes of two distinct ids holding the same
vector; the rows-only step of ``jaxbackprop.sparse`` (if present) gives the dense SGD result to
float32 round-off (another code path sums in another order: a tolerance derived from float32's
epsilon, not bit-identity) and leaves every row outside the batch bit-identical.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, parse_args, roundoff_tolerance, section, write_results  # noqa: E402

from jaxbackprop import manual_value_and_grad, model, plots  # noqa: E402

NAME = "e10_sparse_updates"


@dataclasses.dataclass(frozen=True)
class Config:
    vocab_sizes: tuple = (1000, 20000)  # V; the batch names at most B n of these rows
    embed_dim: int = 16
    window: int = 5
    hidden_dim: int = 32
    batch_size: int = 32
    learning_rate: float = 0.1  # plain SGD: params - lr * grads
    seed: int = 0


QUICK = Config(vocab_sizes=(1000,))


def model_config(cfg: Config, V: int) -> model.ModelConfig:
    return model.ModelConfig(vocab_size=V, embed_dim=cfg.embed_dim, window=cfg.window, hidden_dim=cfg.hidden_dim, activation="tanh")


def make_batch(cfg: Config, V: int):
    """B random windows; window 0 holds word ``a`` twice (positions 0 and 2). Returns (batch, a)."""
    rng = np.random.default_rng(cfg.seed)
    windows = rng.integers(0, V, (cfg.batch_size, cfg.window), dtype=np.int32)
    windows[0, 2] = windows[0, 0]
    labels = rng.integers(0, 5, cfg.batch_size, dtype=np.int32)
    return {"windows": windows, "labels": labels}, int(windows[0, 0])


def sgd_step(params, grads, lr):
    """The plain step of the lecture: theta <- theta - lr * dJ/dtheta, every tensor, densely."""
    return {k: params[k] - lr * grads[k] for k in params}


_value_and_grad = jax.jit(manual_value_and_grad, static_argnames="cfg")


def changed_rows(cfg: Config, V: int) -> dict:
    """After one dense SGD step (float32), which rows of E moved, against the rows in the batch."""
    mcfg = model_config(cfg, V)
    params = model.init_params(jax.random.key(cfg.seed), mcfg)
    batch, _ = make_batch(cfg, V)
    _, grads = _value_and_grad(params, batch, mcfg)
    new = sgd_step(params, grads, cfg.learning_rate)
    E0, E1, gE = (np.asarray(a) for a in (params["E"], new["E"], grads["E"]))
    moved = np.flatnonzero(np.any(E1 != E0, axis=1))
    in_batch = np.unique(batch["windows"])
    outside = np.setdiff1d(np.arange(V), in_batch)
    return {
        "V": V, "batch_positions": int(batch["windows"].size), "batch_rows": len(in_batch), "changed_rows": len(moved),
        "changed_equals_batch": bool(np.array_equal(moved, in_batch)),
        "nonzero_gradient_rows": int(np.sum(np.any(gE != 0, axis=1))),
        "outside_rows": len(outside), "outside_rows_bit_identical": bool(np.array_equal(E1[outside], E0[outside])),
        "other_tensors_changed": {k: bool(np.any(np.asarray(new[k]) != np.asarray(params[k]))) for k in params if k != "E"},
        "row_change_norm": np.linalg.norm(E1 - E0, axis=1),  # (V,), for the plot
        "batch_ids": in_batch,
    }  # fmt: skip


def repeated_word(cfg: Config, V: int) -> dict:
    """Word a twice in window 0, vs the same model with the 2nd occurrence a distinct id (row V, a copy of E[a])."""
    mcfg, mcfg_b = model_config(cfg, V), model_config(cfg, V + 1)
    batch, a = make_batch(cfg, V)
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v, jnp.float64) for k, v in model.init_params(jax.random.key(cfg.seed), mcfg).items()}
        params_b = {**params, "E": jnp.concatenate([params["E"], params["E"][a][None, :]], axis=0)}
        batch_b = {**batch, "windows": batch["windows"].copy()}
        batch_b["windows"][0, 2] = V
        J, g = _value_and_grad(params, batch, mcfg)
        J_b, g_b = _value_and_grad(params_b, batch_b, mcfg_b)
        new, new_b = sgd_step(params, g, cfg.learning_rate), sgd_step(params_b, g_b, cfg.learning_rate)
        E0 = np.asarray(params["E"][a])
        d_twice = np.asarray(new["E"][a]) - E0
        d_first, d_second = np.asarray(new_b["E"][a]) - E0, np.asarray(new_b["E"][V]) - E0
    total = d_first + d_second
    # Three float64 roundings of E0 - lr g at |E0|'s scale, plus the two paths' gradient rows: each a
    # sum of H products (W^T delta), added in the scatter in one order and here in another.
    tol = roundoff_tolerance(np.float64, 1, 3 * float(np.max(np.abs(E0)))) + roundoff_tolerance(
        np.float64, cfg.hidden_dim, cfg.learning_rate * float(np.max(np.abs(np.asarray(g["E"])[a]))))
    return {
        "word": a, "occurrences_in_batch": int(np.sum(batch["windows"] == a)), "loss_abs_diff": abs(float(J) - float(J_b)),
        "change_twice": d_twice, "change_first_slot": d_first, "change_second_slot": d_second,
        "max_abs_diff_vs_sum": float(np.max(np.abs(d_twice - total))),
        "rel_diff_vs_sum": float(np.max(np.abs(d_twice - total)) / np.max(np.abs(total))),
        "tolerance": tol, "tolerance_rel": tol / float(np.max(np.abs(total))),
        "rel_diff_if_only_second": float(np.max(np.abs(d_twice - d_second)) / np.max(np.abs(total))),
        "norms": {"twice": float(np.linalg.norm(d_twice)), "first": float(np.linalg.norm(d_first)),
                  "second": float(np.linalg.norm(d_second))},
        "W_grad_max_abs_diff": float(np.max(np.abs(np.asarray(g["W"]) - np.asarray(g_b["W"])))),
    }  # fmt: skip


def rows_only_step(cfg: Config, V: int) -> dict:
    """jaxbackprop.sparse's rows-only SGD step against the dense step, float32 (if the module exists).

    The two steps compute the same numbers along different code paths (one program vs another,
    repeats summed by a scatter vs by unique ids), so they may round differently: tensor k may
    differ by ``tolerance[k]``, derived from float32's epsilon. Rows no id touches must be
    bit-identical: that is the claim.
    """
    try:
        import optax

        from jaxbackprop import sparse
    except ImportError as e:
        return {"available": False, "reason": f"import failed: {e}"}
    if not hasattr(sparse, "make_sparse_step"):
        return {"available": False, "reason": "jaxbackprop.sparse has no make_sparse_step"}
    mcfg = model_config(cfg, V)
    params = model.init_params(jax.random.key(cfg.seed), mcfg)
    batch, _ = make_batch(cfg, V)
    _, grads = _value_and_grad(params, batch, mcfg)
    dense = sgd_step(params, grads, cfg.learning_rate)
    init, step = sparse.make_sparse_step(mcfg, optax.sgd(cfg.learning_rate), "sgd", cfg.learning_rate, donate=False)
    rows, _, _ = step(params, init(params), batch, None)
    diff = {k: float(np.max(np.abs(np.asarray(rows[k]) - np.asarray(dense[k])))) for k in params}
    same = {k: bool(np.array_equal(np.asarray(rows[k]), np.asarray(dense[k]))) for k in params}
    # p - lr g in two programs: the results round apart by up to eps |p_new| (one rounding each), and
    # each gradient entry is a sum of at most B n H products (dJ/dE of a row in every position; dJ/dW: B)
    # whose order differs between the programs.
    n_terms = cfg.batch_size * cfg.window * cfg.hidden_dim
    tol = {k: roundoff_tolerance(np.float32, 1, float(np.max(np.abs(np.asarray(dense[k])))))
              + roundoff_tolerance(np.float32, n_terms, cfg.learning_rate * float(np.max(np.abs(np.asarray(grads[k])))))
           for k in params}  # fmt: skip
    outside = np.setdiff1d(np.arange(V), np.unique(batch["windows"]))
    E0, E_rows = np.asarray(params["E"]), np.asarray(rows["E"])
    return {"available": True, "V": V, "max_abs_diff": diff, "tolerance": tol, "bit_identical": same,
            "within_tolerance": {k: diff[k] <= tol[k] for k in params},
            "outside_rows_bit_identical": bool(np.array_equal(E_rows[outside], E0[outside])),
            "E_max_abs_change": float(np.max(np.abs(np.asarray(dense["E"]) - E0)))}  # fmt: skip


def plot(result: dict, out: Path) -> list:
    c, r = result["changed"][0], result["repeated"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4))
    norms, ids = np.asarray(c["row_change_norm"]), np.asarray(c["batch_ids"], int)
    rest = np.setdiff1d(np.arange(len(norms)), ids)
    ax1.plot(rest, norms[rest], "|", color="0.6", ms=4, label=f"{len(rest)} rows not in the batch (all exactly 0)")
    ax1.plot(ids, norms[ids], "o", ms=3, color="tab:red", label=f"{len(ids)} rows in the batch")
    ax1.set(xlabel="row of E (word id)", ylabel="||E_new[r] - E[r]||", title=f"one SGD step, V = {c['V']}")
    ax1.legend(fontsize=8)
    twice = np.asarray(r["change_twice"])
    lim = float(np.max(np.abs(twice))) * 1.1
    ax2.plot([-lim, lim], [-lim, lim], "k:", lw=1)
    ax2.plot(twice, np.asarray(r["change_first_slot"]) + np.asarray(r["change_second_slot"]), "o", label="slot 1 + slot 2")
    ax2.plot(twice, r["change_first_slot"], "x", label="slot 1 alone")
    ax2.plot(twice, r["change_second_slot"], "+", label="slot 2 alone")
    ax2.set(xlabel="change of the word used twice (each of d coordinates)", ylabel="change with two distinct ids",
            title="a repeated word gets both updates")  # fmt: skip
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    plots.save(fig, out / "sparse_updates.png")
    return ["sparse_updates.png"]


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv)
    cfg = QUICK if args.quick else Config()
    changed = [changed_rows(cfg, V) for V in cfg.vocab_sizes]
    for c in changed[1:]:  # only the first size is plotted: keep result.json small
        del c["row_change_norm"], c["batch_ids"]
    repeated = repeated_word(cfg, cfg.vocab_sizes[0])
    sparse_check = rows_only_step(cfg, cfg.vocab_sizes[0])
    rows_ok = all(c["changed_equals_batch"] and c["outside_rows_bit_identical"] for c in changed)
    # the repeated word's change is the sum to round-off, and keeping one slot only is off by far more
    repeat_ok = repeated["max_abs_diff_vs_sum"] <= repeated["tolerance"] and repeated["rel_diff_if_only_second"] > 1e-3
    sparse_ok = not sparse_check["available"] or (all(sparse_check["within_tolerance"].values()) and sparse_check["outside_rows_bit_identical"])
    verdict = "supported" if rows_ok and repeat_ok and sparse_ok else ("partly supported" if rows_ok or repeat_ok else "not supported")
    result = {"name": NAME, "config": dataclasses.asdict(cfg), "changed": changed, "repeated": repeated,
              "rows_only_step": sparse_check, "verdict": verdict,
              "claim": "an SGD step moves only the embedding rows of words in the batch; a word twice in a window gets both updates"}  # fmt: skip
    for c in changed:
        print(f"{NAME}: V={c['V']}: changed rows {c['changed_rows']} == batch rows {c['batch_rows']}: {c['changed_equals_batch']}")
    files = plot(result, args.out)
    md = section(number=10, title="Sparse embedding updates and repeated words",
                 claim="dJ/dE is non-zero only on the rows of words in the batch, so SGD needs to update only those "
                       "word vectors; a word that appears twice gets the sum of both gradients.",
                 measured=_measured(result), verdict=verdict, why=_why(result, rows_ok, repeat_ok, sparse_ok),
                 plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def _measured(result) -> list:
    r, s = result["repeated"], result["rows_only_step"]
    lines = [
        f"V = {c['V']}: a batch of {c['batch_positions']} word positions names {c['batch_rows']} distinct rows; after "
        f"one dense step `params - lr * grads` (float32, lr = {result['config']['learning_rate']}) exactly "
        f"{c['changed_rows']} rows of E changed ({'the same set' if c['changed_equals_batch'] else 'NOT the same set'}), "
        f"dJ/dE has {c['nonzero_gradient_rows']} non-zero rows, and the other {c['outside_rows']} rows are "
        f"{'bit-identical' if c['outside_rows_bit_identical'] else 'NOT bit-identical'}; W, b, U, c all changed: "
        f"{all(c['other_tensors_changed'].values())}."
        for c in result["changed"]
    ]  # fmt: skip
    lines.append(
        f"Word {r['word']} at positions 1 and 3 of a window (float64): its change equals the sum of the changes of two "
        f"distinct ids holding the same vector to {fmt(r['rel_diff_vs_sum'])} (max |difference| relative to the "
        f"largest coordinate; float64 round-off allows {fmt(r['tolerance_rel'])}); the two slots contribute norms {fmt(r['norms']['first'])} and "
        f"{fmt(r['norms']['second'])}, the word moves by {fmt(r['norms']['twice'])}. Keeping only the last slot's "
        f"update (assignment instead of scatter-add) would be off by {fmt(r['rel_diff_if_only_second'])} relative. "
        f"The two models' losses differ by {fmt(r['loss_abs_diff'])}, their dJ/dW by {fmt(r['W_grad_max_abs_diff'])}."
    )  # fmt: skip
    if s["available"]:
        same = [k for k, v in s["bit_identical"].items() if v]
        within = [k for k, v in s["within_tolerance"].items() if v]
        lines.append(
            f"`jaxbackprop.sparse.make_sparse_step` (rows-only SGD) vs the dense step, V = {s['V']}, float32: max "
            f"|difference| " + ", ".join(f"{k} {fmt(s['max_abs_diff'][k])} (allowed {fmt(s['tolerance'][k])})" for k in sorted(s["max_abs_diff"]))
            + f"; within float32 round-off: {', '.join(sorted(within)) or 'none'}; bit-identical: {', '.join(sorted(same)) or 'none'} "
            f"(largest change of E in the step: {fmt(s['E_max_abs_change'])}); rows outside the batch "
            f"{'bit-identical' if s['outside_rows_bit_identical'] else 'NOT bit-identical'}. The allowance is 4 eps32 "
            f"(|p_new| + lr sqrt(B n H) |g|): two programs may round p - lr g apart, and sum a gradient's products in other orders."
        )  # fmt: skip
    else:
        lines.append(f"Rows-only step not checked: {s['reason']}.")
    return lines


def _why(result, rows_ok, repeat_ok, sparse_ok) -> str:
    parts = ["Only the batch's rows move and every other row keeps its exact bits;" if rows_ok
             else "Rows outside the batch moved, or batch rows did not:",
             "the repeated word gets both slices' gradients, summed (the scatter-add of backprop.scatter_rows)." if repeat_ok
             else "the repeated word's update is not the sum of both slices' updates."]  # fmt: skip
    if result["rows_only_step"]["available"]:
        parts.append("The rows-only step reproduces the dense SGD step to float32 round-off and leaves the other rows' bits alone."
                     if sparse_ok else "The rows-only step differs from the dense SGD step by more than float32 round-off, or moved other rows.")
    return " ".join(parts)


if __name__ == "__main__":
    main(sys.argv[1:])
