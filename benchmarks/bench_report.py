"""The markdown report of a ``bench_step.py`` run, derived from its JSON alone.

Rewrite the report from saved results without timing anything again::

    python benchmarks/bench_report.py benchmarks/results/bench_step.json BENCHMARKS.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import harness
from targets import fastest, rows_of, targets, torch_rows

TRAIN_ORDER = harness.JAX_TRAIN + harness.TORCH_TRAIN
HUGEPAGES_OUT = (
    "--out benchmarks/results/bench_step_hugepages.json --markdown benchmarks/results/bench_step_hugepages.md"
)


def markdown(result) -> str:
    """The whole report: how it was made, on what, then one section per measurement."""
    env = result["environment"]
    accelerator, glibc = env.get("accelerator"), env["env"].get("GLIBC_TUNABLES")
    cols = columns(result, "train")
    lines = ["# Benchmarks: one training step of the window model" + (f" on {accelerator}" if accelerator else "")]
    lines += ["", *how_made(accelerator, glibc), "", setup(result), "", method(result), ""]
    lines += load_warning(result)
    lines += [variants_note(accelerator), ""]
    lines += throughput(result, cols) + relative_to_torch(result, cols) + gflops(result, cols)
    lines += passes(result) + compiled_memory(result, cols) + peak_memory(result.get("memory", []))
    lines += targets_md(result["targets"])
    if not accelerator and not glibc:
        lines += [
            "The same benchmark on a GPU (NVIDIA H200, JAX and PyTorch both on the GPU): "
            "[BENCHMARKS_GPU.md](BENCHMARKS_GPU.md); on this CPU with 2 MB pages for large buffers "
            "(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`): "
            "[benchmarks/results/bench_step_hugepages.md](benchmarks/results/bench_step_hugepages.md).",
            "",
        ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- header


def how_made(accelerator, glibc) -> list:
    if accelerator:
        return [
            "Written by `benchmarks/bench_step.py` on a machine whose JAX has a GPU backend (results JSON: "
            "`benchmarks/results/bench_step_gpu.json`). Regenerate there with",
            "",
            "    python benchmarks/bench_step.py",
            "",
        ]
    tunables = f"GLIBC_TUNABLES={glibc} " if glibc else ""
    where = f" {HUGEPAGES_OUT}" if glibc else ""  # a run with huge pages is kept beside the default one
    return [
        "Written by `benchmarks/bench_step.py` (results JSON: `benchmarks/results/`). Regenerate with",
        "",
        f"    {tunables}env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_step.py{where}",
        "",
        "(unsetting those two OpenBLAS variables, for this command only, gives numpy its full matmul speed "
        "for the peak below).",
    ]


def setup(result) -> str:
    """Model, machine (CPU model always), versions, date, commit and command."""
    env = result["environment"]
    cpu = env.get("cpu_model") or env["processor"]  # results before provenance.environment: "processor"
    if env.get("accelerator"):
        machine = f"{env['accelerator']} ({', '.join(env['jax_devices'])}), host {cpu} with {env['cpu_count']} CPUs"
    else:
        machine = f"{cpu}, {env['cpu_count']} CPUs, JAX on {', '.join(env['jax_devices'])}"
        if glibc := env["env"].get("GLIBC_TUNABLES"):
            machine += f", `GLIBC_TUNABLES={glibc}` (huge pages: see README)"
    commit = env.get("git_commit")
    at = f" at commit {commit[:10]}{' with local changes' if env.get('git_dirty') else ''}" if commit else ""
    return (
        f"Model: window {env['window']}, H={env['hidden']}, relu, softmax head of {env['classes']} classes, "
        f"{env['dtype']}, {env['optimizer']}; word ids Zipf (p ~ rank^-1.07) unless marked uniform. "
        f"Machine: {machine}. JAX {env['jax']}, optax {env['optax']}, {torch_note(env)}. "
        f"Run {env['date']}{at}, `{env['command']}`, {result['wall_s'] / 60:.1f} min."
    )


def torch_note(env) -> str:
    if not env["torch"]:
        return "torch not installed: no PyTorch rows"
    if env.get("torch_device") == "cuda":
        tf32 = "allowed" if env.get("torch_cuda_matmul_allow_tf32") else "off, its default"
        return f"torch {env['torch']} on cuda (TF32 matmuls {tf32})"
    return (
        f"torch {env['torch']}, default {env['torch_default_threads']} threads (a `[1t]` suffix: the same "
        "variant run with `torch.set_num_threads(1)`)"
    )


def method(result) -> str:
    repeats = result["shapes"][0]["rows"][0]["repeats"]
    return (
        f"Each number is the median of {repeats} repeats after a warm-up; repeats "
        "run round-robin over the variants so that outside load hits all of them alike; ± is the "
        "interquartile range over repeats, relative to the median."
    )


def load_warning(result) -> list:
    """A paragraph when the 1-minute load average exceeded half the CPUs before or after the run."""
    load, cpus = result["load_average"], result["environment"]["cpu_count"]
    if max(load["before"][0], load["after"][0]) <= 0.5 * cpus:
        return []
    return [
        f"**The machine was shared with other jobs during the run** (1-minute load average "
        f"{load['before'][0]:.1f} before, {load['after'][0]:.1f} after, on {cpus} CPUs): absolute numbers are "
        "noisy (see the ± spreads) and can shift between shapes, which run one after another; ratios between "
        "variants of one shape, timed round-robin, are the more reliable reading.",
        "",
    ]


def variants_note(accelerator) -> str:
    note = (
        "Reading the variants: `jax_grad`, `manual` and `flax` apply `optax.adam` to a dense (V, d) gradient of "
        "E, so every step reads and writes four V x d tables (E, its gradient, m, v) and their cost grows with V; "
        "`sparse` (`jaxbackprop.sparse.make_sparse_step`, lazy Adam) touches only the rows of the batch, like "
        "`torch_sparse` (`nn.Embedding(sparse=True)` + `SparseAdam`). `torch_dense` and `torch_compile` use a "
        "dense embedding gradient and fused Adam"
    )
    if not accelerator:
        return note + (
            ". On an oversubscribed machine torch's OpenMP threads wait for "
            "descheduled peers, which is why the `[1t]` rows exist."
        )
    return note + (
        '; `torch_graphs` is `torch.compile(mode="reduce-overhead")`, which replays the step\'s kernels as '
        "CUDA graphs. Every step is one call from Python (one jitted program for JAX; for torch, eager kernel "
        "launches, except where CUDA graphs replay them), timed until the device has finished; at small "
        "batches that launch cost, not the arithmetic, sets the pace."
    )


# ----------------------------------------------------------------------------- sections


def throughput(result, cols) -> list:
    body = []
    for s in result["shapes"]:
        rows = rows_of(s)
        cells = [f"{thousands(rows[c]['windows_per_s'])} ±{rows[c]['iqr_pct']:.0f}%" if c in rows else "" for c in cols]
        body.append([s["name"]] + cells)
    return ["## Training-step throughput (windows/s)", "", table(["shape"] + cols, body), ""]


def relative_to_torch(result, cols) -> list:
    body = []
    for s in result["shapes"]:
        rows = rows_of(s, "train")
        if best := fastest(torch_rows(rows)):
            ratios = [f"{rows[c]['windows_per_s'] / best['windows_per_s']:.2f}" if c in rows else "" for c in cols]
            body.append([s["name"], best["variant"]] + ratios)
    text = table(["shape", "best torch"] + cols, body) if body else "(no PyTorch rows)"
    return ["## Relative to the best PyTorch variant of the same shape (>1: faster)", "", text, ""]


def gflops(result, cols) -> list:
    peaks = result["matmul_peak"]
    pk = ", ".join(f"{k} {v['gflops']:.1f}" for k, v in peaks.items())
    tf32 = (
        "; jnp is XLA default precision, TF32 on this chip, jnp_highest true float32" if "jnp_highest" in peaks else ""
    )
    body = []
    for s in result["shapes"]:
        rows = rows_of(s, "train")
        cells = [f"{rows[c]['gflops']:.1f} ({rows[c]['pct_of_peak']:.0f}%)" if c in rows else "" for c in cols]
        body.append([s["name"], f"{s['layer_matmul_gflops']:.1f}"] + cells)
    return [
        "## Achieved GFLOP/s (% of the machine's matmul peak)",
        "",
        f"Peak: float32 {next(iter(peaks.values()))['n']}^2 matmul, {pk} GFLOP/s (the larger is 100%{tf32}). "
        "A step counts 2 B D H x 3 (z = x W^T, dW, dx) plus 2 B H C x 3 for the head; 'layer matmul' is a lone "
        "jitted x W^T of the shape, the most a step of that shape could reach.",
        "",
        table(["shape", "layer matmul"] + cols, body),
        "",
    ]


def passes(result) -> list:
    body = [pass_line(s["name"], rows_of(s, "pass")) for s in result["shapes"] if "jax_fwd" in rows_of(s, "pass")]
    header = ["shape", "jax fwd ms", "fwd+bwd rows ms", "fwd+bwd jax.grad ms", "torch fwd ms", "torch fwd+bwd ms"]
    return [
        "## Forward vs forward + backward",
        "",
        "The lecture: backprop costs the same order as the forward pass. `fwd` is the jitted loss; `fwd+bwd rows` "
        "is the hand-derived pass with dJ/dE kept as rows (the lecture's computation); `fwd+bwd jax.grad` also "
        "builds the dense (V, d) dJ/dE. torch: forward under no_grad, and forward + backward with a sparse "
        "embedding gradient.",
        "",
        table(header, body),
        "",
    ]


def pass_line(name, r) -> list:
    f = r["jax_fwd"]["step_ms"]
    line = [name, f"{f:.2f}"]
    for k in ("jax_fwdbwd_rows", "jax_fwdbwd_grad"):
        line.append(f"{r[k]['step_ms']:.2f} ({r[k]['step_ms'] / f:.1f}x)" if k in r else "")
    tf, tb = r.get("torch_fwd"), r.get("torch_fwdbwd")
    line.append(f"{tf['step_ms']:.2f}" if tf else "")
    line.append(f"{tb['step_ms']:.2f} ({tb['step_ms'] / tf['step_ms']:.1f}x)" if tb and tf else "")
    return line


def compiled_memory(result, cols) -> list:
    mem_cols = [c for c in cols if c in harness.JAX_TRAIN]
    body = []
    for s in result["shapes"]:
        rows = rows_of(s)
        body.append(
            [s["name"]] + [f"{rows[c].get('temp_mb', float('nan')):.1f}" if c in rows else "" for c in mem_cols]
        )
    return [
        "## Working memory of the compiled JAX steps (MB)",
        "",
        "XLA's `memory_analysis()` temp buffers, beyond the donated parameters and optimizer state.",
        "",
        table(["shape"] + mem_cols, body),
        "",
    ]


def peak_memory(memory) -> list:
    if not memory:
        return []
    cols = []
    for m in memory:
        cols += [r["variant"] for r in m["rows"] if r["variant"] not in cols]
    on_device = any(r.get("device") not in (None, "cpu") for m in memory for r in m["rows"])
    body = []
    for m in memory:
        rows = {r["variant"]: r for r in m["rows"]}
        peaks = [rows.get(c, {}).get("peak_mb") for c in cols]
        body.append([m["shape"]] + ["" if p is None else f"{p:.0f}" for p in peaks])
    if on_device:
        what = (
            "the device's own high-water mark while the step runs (JAX `memory_stats()`, torch `max_memory_allocated`)."
        )
    else:
        what = (
            "the largest resident set size, sampled every millisecond while the step runs, above the process's "
            "size just before the variant was built (runtime already started, batches already made): parameters, "
            "optimizer state, gradients, temporaries and the compiled program. Each (V, d) float32 table at "
            "V = 400k, d = 50 is 76 MB."
        )
    intro = "Each variant in a fresh process (`benchmarks/bench_memory.py`): " + what
    return ["## Peak memory of a training step (MB)", "", intro, "", table(["shape"] + cols, body), ""]


def targets_md(t) -> list:
    lines = ["## Targets", ""]
    for e in t["jax_vs_best_torch"]:
        worst = min(e["ratios"], key=e["ratios"].get)
        lines.append(
            f"- every JAX variant >= best PyTorch ({e['best_torch']}) at {e['shape']}: {verdict(e['met'])} "
            f"(slowest: {worst} at {e['ratios'][worst]:.2f}x)"
        )
    for e in t["sparse_vs_torch_sparse"]:
        lines.append(f"- sparse step >= 1.5x {e['torch']} at {e['shape']}: {verdict(e['met'])} ({e['ratio']:.2f}x)")
    for e in t["pct_of_peak_at_4096"]:
        lines.append(f"- >= 50% of matmul peak at {e['shape']}: {verdict(e['met'])} ({e['variant']}: {e['pct']:.1f}%)")
    for e in t["sparse_vocab_ratio"]:
        if e.get("side_by_side"):
            how = f"{e['step_ms'][1]:.2f} vs {e['step_ms'][0]:.2f} ms, timed side by side"
        else:
            how = "across the sweep's shapes, which ran minutes apart"
        lines.append(
            f"- sparse step time V=400k / V=20k at B=512, {e['ids']} ids, <= 1.3: {verdict(e['met'])} "
            f"({e['ratio']:.2f}, {how})"
        )
    return lines + [""]


# ----------------------------------------------------------------------------- formatting


def columns(result, kind) -> list:
    """The variants of ``kind`` found in any shape, JAX first, then torch, thread settings last."""
    seen = []
    for s in result["shapes"]:
        seen += [r["variant"] for r in s["rows"] if r["kind"] == kind and r["variant"] not in seen]
    order = {v: i for i, v in enumerate(TRAIN_ORDER)}
    return sorted(seen, key=lambda v: (order.get(v.split("[")[0], 99), v))


def table(header, lines) -> str:
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(rows + ["| " + " | ".join(line) + " |" for line in lines])


def thousands(x) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def verdict(met) -> str:
    return "**met**" if met else "**not met**"


def main(argv=None):
    json_path, md_path = sys.argv[1:] if argv is None else argv
    result = json.loads(Path(json_path).read_text())
    result["targets"] = targets(result)
    harness.write_text(md_path, markdown(result))  # a temporary file, then a rename: never half a report


if __name__ == "__main__":
    main()
