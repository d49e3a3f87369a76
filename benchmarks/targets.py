"""The benchmark issue's four targets, read from the JSON that ``bench_step.py`` writes.

1. every JAX training variant at least as fast as the best PyTorch variant of the same shape;
2. the rows-only step at least 1.5x torch's ``SparseAdam`` step at V = 400k;
3. at batch 4096, the best JAX step at >= 50% of the machine's matmul peak;
4. the rows-only step at V = 400k at most 1.3x its time at V = 20k (B = 512).

Also the small readers of a result that the report shares.
"""

from __future__ import annotations

from harness import JAX_TRAIN


def rows_of(shape, kind=None) -> dict:
    """A shape's result rows by variant name; only training steps or passes with ``kind``."""
    return {r["variant"]: r for r in shape["rows"] if kind is None or r["kind"] == kind}


def torch_rows(rows, base=None) -> dict:
    """The PyTorch rows (of one variant, any thread setting, with ``base``)."""
    return {k: r for k, r in rows.items() if k.startswith("torch") and (base is None or k.split("[")[0] == base)}


def fastest(rows):
    """The row with the most windows per second, None when there are none."""
    return max(rows.values(), key=lambda r: r["windows_per_s"]) if rows else None


def find_shape(result, batch, vocab, dim, ids):
    for s in result["shapes"]:
        if (s["batch"], s["vocab"], s["dim"], s["ids"]) == (batch, vocab, dim, ids):
            return s
    return None


def targets(result) -> dict:
    """Each target's entries (one per shape or id distribution it applies to), with the numbers
    behind it and whether it was met."""
    out = {"jax_vs_best_torch": [], "sparse_vs_torch_sparse": [], "pct_of_peak_at_4096": []}
    for s in result["shapes"]:
        rows = rows_of(s, "train")
        jax_rows = {k: r for k, r in rows.items() if k in JAX_TRAIN}
        best_torch = fastest(torch_rows(rows))
        if best_torch and len(jax_rows) == len(JAX_TRAIN):  # shapes that run every variant
            ratios = {k: r["windows_per_s"] / best_torch["windows_per_s"] for k, r in jax_rows.items()}
            met = min(ratios.values()) >= 1
            out["jax_vs_best_torch"].append(
                {"shape": s["name"], "best_torch": best_torch["variant"], "ratios": ratios, "met": met}
            )
        best_sparse = fastest(torch_rows(rows, "torch_sparse"))
        if s["vocab"] >= 400_000 and best_sparse and "sparse" in rows:
            ratio = rows["sparse"]["windows_per_s"] / best_sparse["windows_per_s"]
            out["sparse_vs_torch_sparse"].append(
                {"shape": s["name"], "torch": best_sparse["variant"], "ratio": ratio, "met": ratio >= 1.5}
            )
        if s["batch"] == 4096 and jax_rows:
            best = fastest(jax_rows)
            pct = best["pct_of_peak"]
            out["pct_of_peak_at_4096"].append(
                {"shape": s["name"], "variant": best["variant"], "pct": pct, "met": pct >= 50}
            )
    out["sparse_vocab_ratio"] = sparse_vocab_ratio(result)
    return out


def sparse_vocab_ratio(result) -> list:
    """Target 4 from the side-by-side timing; older results have only the sweep's two shapes,
    which ran minutes apart."""
    out = []
    for e in result.get("vocab_ratio", []):
        if e["vocabs"] == [20_000, 400_000]:
            met = e["ratio"] <= 1.3
            out.append(
                {"ids": e["ids"], "ratio": e["ratio"], "met": met, "side_by_side": True, "step_ms": e["step_ms"]}
            )
    for ids in () if out else ("zipf", "uniform"):
        small, large = find_shape(result, 512, 20_000, 50, ids), find_shape(result, 512, 400_000, 50, ids)
        if small and large and "sparse" in rows_of(small) and "sparse" in rows_of(large):
            ratio = rows_of(large)["sparse"]["step_ms"] / rows_of(small)["sparse"]["step_ms"]
            out.append({"ids": ids, "ratio": ratio, "met": ratio <= 1.3, "side_by_side": False})
    return out
