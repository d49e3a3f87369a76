"""Targets and the markdown report, both derived from the JSON that ``bench_step.py`` writes.

Rewrite the report from saved results without timing anything again::

    python benchmarks/bench_report.py benchmarks/results/bench_step.json BENCHMARKS.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TRAIN_ORDER = ("jax_grad", "manual", "sparse", "flax", "torch_dense", "torch_sparse", "torch_compile", "torch_graphs")
JAX_TRAIN = TRAIN_ORDER[:4]


def _rows(shape, kind=None):
    return {r["variant"]: r for r in shape["rows"] if kind is None or r["kind"] == kind}


def _torch(rows, base=None):
    return {k: r for k, r in rows.items() if k.startswith("torch") and (base is None or k.split("[")[0] == base)}


def _best(rows):
    return max(rows.values(), key=lambda r: r["windows_per_s"]) if rows else None


def _find(result, batch, vocab, dim, ids):
    for s in result["shapes"]:
        if (s["batch"], s["vocab"], s["dim"], s["ids"]) == (batch, vocab, dim, ids):
            return s
    return None


def targets(result):
    """The issue's four targets, each with the numbers behind it and whether it was met."""
    out = {"jax_vs_best_torch": [], "sparse_vs_torch_sparse": [], "pct_of_peak_at_4096": [], "sparse_vocab_ratio": []}
    for s in result["shapes"]:
        rows = _rows(s, "train")
        jax_rows = {k: r for k, r in rows.items() if k in JAX_TRAIN}
        best_torch = _best(_torch(rows))
        if best_torch and len(jax_rows) == len(JAX_TRAIN):  # shapes that run every variant
            ratios = {k: r["windows_per_s"] / best_torch["windows_per_s"] for k, r in jax_rows.items()}
            out["jax_vs_best_torch"].append(
                {"shape": s["name"], "best_torch": best_torch["variant"], "ratios": ratios, "met": min(ratios.values()) >= 1}
            )
        best_sparse = _best(_torch(rows, "torch_sparse"))
        if s["vocab"] >= 400_000 and best_sparse and "sparse" in rows:
            ratio = rows["sparse"]["windows_per_s"] / best_sparse["windows_per_s"]
            out["sparse_vs_torch_sparse"].append(
                {"shape": s["name"], "torch": best_sparse["variant"], "ratio": ratio, "met": ratio >= 1.5}
            )
        if s["batch"] == 4096 and jax_rows:
            best = _best(jax_rows)
            out["pct_of_peak_at_4096"].append(
                {"shape": s["name"], "variant": best["variant"], "pct": best["pct_of_peak"], "met": best["pct_of_peak"] >= 50}
            )
    for e in result.get("vocab_ratio", []):  # timed side by side (older results: across shapes, below)
        if e["vocabs"] == [20_000, 400_000]:
            out["sparse_vocab_ratio"].append({"ids": e["ids"], "ratio": e["ratio"], "met": e["ratio"] <= 1.3, "side_by_side": True,
                                              "step_ms": e["step_ms"]})  # fmt: skip
    for ids in () if out["sparse_vocab_ratio"] else ("zipf", "uniform"):
        small, large = _find(result, 512, 20_000, 50, ids), _find(result, 512, 400_000, 50, ids)
        if small and large and "sparse" in _rows(small) and "sparse" in _rows(large):
            ratio = _rows(large)["sparse"]["step_ms"] / _rows(small)["sparse"]["step_ms"]
            out["sparse_vocab_ratio"].append({"ids": ids, "ratio": ratio, "met": ratio <= 1.3, "side_by_side": False})
    return out


def _k(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def _table(header, lines):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(l) + " |" for l in lines])


def _columns(result, kind):
    seen = []
    for s in result["shapes"]:
        for r in s["rows"]:
            if r["kind"] == kind and r["variant"] not in seen:
                seen.append(r["variant"])
    order = {v: i for i, v in enumerate(TRAIN_ORDER)}
    return sorted(seen, key=lambda v: (order.get(v.split("[")[0], 99), v))


def markdown(result):
    env, peaks, load = result["environment"], result["matmul_peak"], result["load_average"]
    noisy = max(load["before"][0], load["after"][0]) > 0.5 * env["cpu_count"]
    accelerator = env.get("accelerator")
    if not env["torch"]:
        torch_note = "torch not installed: no PyTorch rows"
    elif env.get("torch_device") == "cuda":
        torch_note = (f"torch {env['torch']} on cuda (TF32 matmuls "
                      f"{'allowed' if env.get('torch_cuda_matmul_allow_tf32') else 'off, its default'})")
    else:
        torch_note = (f"torch {env['torch']}, default {env['torch_default_threads']} threads (a `[1t]` suffix: the same "
                      "variant run with `torch.set_num_threads(1)`)")
    glibc = env["env"].get("GLIBC_TUNABLES")
    tunables = f"GLIBC_TUNABLES={glibc} " if glibc else ""
    # a run with huge pages is kept beside the default one, not over it
    where = " --out benchmarks/results/bench_step_hugepages.json --markdown benchmarks/results/bench_step_hugepages.md" if glibc else ""
    if accelerator:
        how = [
            ("Written by `benchmarks/bench_step.py` on a machine whose JAX has a GPU backend (results JSON: "
             "`benchmarks/results/bench_step_gpu.json`). Regenerate there with"),
            "",
            "    python benchmarks/bench_step.py",
            "",
        ]
        machine = f"{accelerator} ({', '.join(env['jax_devices'])}), host {env['processor']} with {env['cpu_count']} CPUs"
    else:
        how = [
            "Written by `benchmarks/bench_step.py` (results JSON: `benchmarks/results/`). Regenerate with",
            "",
            f"    {tunables}env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_step.py{where}",
            "",
            ("(unsetting those two OpenBLAS variables, for this command only, gives numpy its full matmul speed "
            "for the peak below)."),
        ]
        machine = f"{env['processor']}, {env['cpu_count']} CPUs, JAX on {', '.join(env['jax_devices'])}"
        if glibc:
            machine += f", `GLIBC_TUNABLES={glibc}` (huge pages: see README)"
    lines = [
        "# Benchmarks: one training step of the window model" + (f" on {accelerator}" if accelerator else ""),
        "",
        *how,
        "",
        (f"Model: window {env['window']}, H={env['hidden']}, relu, softmax head of {env['classes']} classes, "
        f"{env['dtype']}, {env['optimizer']}; word ids Zipf (p ~ rank^-1.07) unless marked uniform. "
        f"Machine: {machine}. JAX {env['jax']}, optax {env['optax']}, {torch_note}. "
        f"Run {env['date']}, `{env['command']}`, {result['wall_s'] / 60:.1f} min."),
        "",
        (f"Each number is the median of {result['shapes'][0]['rows'][0]['repeats']} repeats after a warm-up; repeats "
        "run round-robin over the variants so that outside load hits all of them alike; ± is the "
        "interquartile range over repeats, relative to the median."),
        "",
    ]
    if noisy:
        lines += [
            (f"**The machine was shared with other jobs during the run** (1-minute load average {load['before'][0]:.1f} "
            f"before, {load['after'][0]:.1f} after, on {env['cpu_count']} CPUs): absolute numbers are noisy (see the "
            "± spreads) and can shift between shapes, which run one after another; ratios between variants of "
            "one shape, timed round-robin, are the more reliable reading."),
            "",
        ]
    lines += [
        ("Reading the variants: `jax_grad`, `manual` and `flax` apply `optax.adam` to a dense (V, d) gradient of E, "
        "so every step reads and writes four V x d tables (E, its gradient, m, v) and their cost grows with V; "
        "`sparse` (`jaxbackprop.sparse.make_sparse_step`, lazy Adam) touches only the rows of the batch, like "
        "`torch_sparse` (`nn.Embedding(sparse=True)` + `SparseAdam`). `torch_dense` and `torch_compile` use a dense "
        "embedding gradient and fused Adam"
        + ("; `torch_graphs` is `torch.compile(mode=\"reduce-overhead\")`, which replays the step's kernels as "
           "CUDA graphs." if accelerator else ".")
        + ("" if accelerator else " On an oversubscribed machine torch's OpenMP threads wait for "
           "descheduled peers, which is why the `[1t]` rows exist.")
        + (" Every step is one call from Python (one jitted program for JAX; for torch, eager kernel "
           "launches, except where CUDA graphs replay them), timed until the device has finished; at small "
           "batches that launch cost, not the arithmetic, sets the pace." if accelerator else "")),
        "",
        "## Training-step throughput (windows/s)",
        "",
    ]
    cols = _columns(result, "train")
    body = []
    for s in result["shapes"]:
        rows = _rows(s)
        body.append([s["name"]] + [f"{_k(rows[c]['windows_per_s'])} ±{rows[c]['iqr_pct']:.0f}%" if c in rows else "" for c in cols])
    lines += [_table(["shape"] + cols, body), ""]

    lines += ["## Relative to the best PyTorch variant of the same shape (>1: faster)", ""]
    body = []
    for s in result["shapes"]:
        rows = _rows(s, "train")
        best = _best(_torch(rows))
        if best:
            body.append([s["name"], best["variant"]] + [f"{rows[c]['windows_per_s'] / best['windows_per_s']:.2f}" if c in rows else "" for c in cols])
    lines += [_table(["shape", "best torch"] + cols, body) if body else "(no PyTorch rows)", ""]

    pk = ", ".join(f"{k} {v['gflops']:.1f}" for k, v in peaks.items())
    lines += [
        "## Achieved GFLOP/s (% of the machine's matmul peak)",
        "",
        (f"Peak: float32 {next(iter(peaks.values()))['n']}^2 matmul, {pk} GFLOP/s (the larger is 100%"
        f"{'; jnp is XLA default precision, TF32 on this chip, jnp_highest true float32' if 'jnp_highest' in peaks else ''}). A step counts "
        "2 B D H x 3 (z = x W^T, dW, dx) plus 2 B H C x 3 for the head; 'layer matmul' is a lone jitted "
        "x W^T of the shape, the most a step of that shape could reach."),
        "",
    ]
    body = []
    for s in result["shapes"]:
        rows = _rows(s, "train")
        body.append([s["name"], f"{s['layer_matmul_gflops']:.1f}"] + [f"{rows[c]['gflops']:.1f} ({rows[c]['pct_of_peak']:.0f}%)" if c in rows else "" for c in cols])
    lines += [_table(["shape", "layer matmul"] + cols, body), ""]

    lines += [
        "## Forward vs forward + backward",
        "",
        ("The lecture: backprop costs the same order as the forward pass. `fwd` is the jitted loss; `fwd+bwd rows` "
        "is the hand-derived pass with dJ/dE kept as rows (the lecture's computation); `fwd+bwd jax.grad` also "
        "builds the dense (V, d) dJ/dE. torch: forward under no_grad, and forward + backward with a sparse embedding gradient."),
        "",
    ]
    body = []
    for s in result["shapes"]:
        r = _rows(s, "pass")
        if "jax_fwd" not in r:
            continue
        f = r["jax_fwd"]["step_ms"]
        line = [s["name"], f"{f:.2f}"]
        for k in ("jax_fwdbwd_rows", "jax_fwdbwd_grad"):
            line.append(f"{r[k]['step_ms']:.2f} ({r[k]['step_ms'] / f:.1f}x)" if k in r else "")
        tf = r.get("torch_fwd")
        line.append(f"{tf['step_ms']:.2f}" if tf else "")
        tb = r.get("torch_fwdbwd")
        line.append(f"{tb['step_ms']:.2f} ({tb['step_ms'] / tf['step_ms']:.1f}x)" if tb and tf else "")
        body.append(line)
    lines += [_table(["shape", "jax fwd ms", "fwd+bwd rows ms", "fwd+bwd jax.grad ms", "torch fwd ms", "torch fwd+bwd ms"], body), ""]

    mem_cols = [c for c in cols if c in JAX_TRAIN]
    body = [
        [s["name"]] + [f"{_rows(s)[c].get('temp_mb', float('nan')):.1f}" if c in _rows(s) else "" for c in mem_cols]
        for s in result["shapes"]
    ]
    lines += [
        "## Working memory of the compiled JAX steps (MB)",
        "",
        "XLA's `memory_analysis()` temp buffers, beyond the donated parameters and optimizer state.",
        "",
        _table(["shape"] + mem_cols, body),
        "",
    ]
    lines += _memory_md(result.get("memory", []))
    lines += _targets_md(result["targets"])
    if not accelerator and not glibc:
        lines += [("The same benchmark on a GPU (NVIDIA H200, JAX and PyTorch both on the GPU): "
                   "[BENCHMARKS_GPU.md](BENCHMARKS_GPU.md); on this CPU with 2 MB pages for large buffers "
                   "(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`): "
                   "[benchmarks/results/bench_step_hugepages.md](benchmarks/results/bench_step_hugepages.md)."), ""]
    return "\n".join(lines) + "\n"


def _memory_md(memory):
    if not memory:
        return []
    cols = []
    for m in memory:
        cols += [r["variant"] for r in m["rows"] if r["variant"] not in cols]
    on_device = any(r.get("device") not in (None, "cpu") for m in memory for r in m["rows"])
    body = []
    for m in memory:
        rows = {r["variant"]: r for r in m["rows"]}
        body.append([m["shape"]] + [f"{rows[c]['peak_mb']:.0f}" if rows.get(c, {}).get("peak_mb") is not None else "" for c in cols])
    return [
        "## Peak memory of a training step (MB)",
        "",
        ("Each variant in a fresh process (`benchmarks/bench_memory.py`): "
         + ("the device's own high-water mark while the step runs (JAX `memory_stats()`, torch `max_memory_allocated`)."
            if on_device else
            "the largest resident set size, sampled every millisecond while the step runs, above the process's size "
            "just before the variant was built (runtime already started, batches already made): parameters, optimizer "
            "state, gradients, temporaries and the compiled program. Each (V, d) float32 table at V = 400k, d = 50 is 76 MB.")),
        "",
        _table(["shape"] + cols, body),
        "",
    ]


def _yes(met):
    return "**met**" if met else "**not met**"


def _targets_md(t):
    lines = ["## Targets", ""]
    for e in t["jax_vs_best_torch"]:
        worst = min(e["ratios"], key=e["ratios"].get)
        lines.append(f"- every JAX variant >= best PyTorch ({e['best_torch']}) at {e['shape']}: {_yes(e['met'])} (slowest: {worst} at {e['ratios'][worst]:.2f}x)")
    for e in t["sparse_vs_torch_sparse"]:
        lines.append(f"- sparse step >= 1.5x {e['torch']} at {e['shape']}: {_yes(e['met'])} ({e['ratio']:.2f}x)")
    for e in t["pct_of_peak_at_4096"]:
        lines.append(f"- >= 50% of matmul peak at {e['shape']}: {_yes(e['met'])} ({e['variant']}: {e['pct']:.1f}%)")
    for e in t["sparse_vocab_ratio"]:
        how = (f"{e['step_ms'][1]:.2f} vs {e['step_ms'][0]:.2f} ms, timed side by side" if e.get("side_by_side")
               else "across the sweep's shapes, which ran minutes apart")  # fmt: skip
        lines.append(f"- sparse step time V=400k / V=20k at B=512, {e['ids']} ids, <= 1.3: {_yes(e['met'])} ({e['ratio']:.2f}, {how})")
    return lines + [""]


if __name__ == "__main__":
    # a temporary file, then a rename: never a half-written report
    from jaxbackprop.checkpoint import write_text

    result = json.loads(Path(sys.argv[1]).read_text())
    result["targets"] = targets(result)
    write_text(sys.argv[2], markdown(result))
