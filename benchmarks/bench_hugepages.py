"""Step time with and without 2 MB pages for large buffers (Linux, glibc >= 2.35).

glibc's ``malloc``, which holds XLA's (and PyTorch's) CPU buffers, asks the kernel for
transparent huge pages only when ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` is set at process
start, so each setting runs in fresh processes, alternating, and the medians are compared:

    python benchmarks/bench_hugepages.py            # ~2 min on 2 cores
    python benchmarks/bench_hugepages.py --quick    # small shapes, one round: a smoke test
    python benchmarks/bench_hugepages.py --out H.json   # also the medians and the machine, as JSON

Each case is one JAX variant (``jax_variants.py``) at one shape, timed with
:func:`harness.time_round_robin` (5 repeats) in each fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import harness
from harness import Shape
from jax_variants import jax_runners

SETTINGS = {"4 KB pages": "", "huge pages": "glibc.malloc.hugetlb=1"}
# the dense step at a large vocabulary allocates (V, d) temporaries every step; the rows-only one does not
CASES = [("manual", 512, 400_000), ("sparse", 4096, 400_000)]
QUICK_CASES = [("manual", 64, 5_000), ("sparse", 64, 5_000)]


def child(cases) -> dict:
    """In a fresh process: the median step time (ms) of every case."""
    out = {}
    for variant, batch, vocab in cases:
        shape = Shape(batch, vocab, 50, "zipf", (variant,))
        (runner,) = jax_runners(shape, 200, *harness.make_batches(shape), shape.variants)
        harness.time_round_robin([runner], repeats=5, min_time=0.2 if vocab > 5_000 else 0.02)
        out[case_name(variant, batch, vocab)] = harness.median_ms(runner)
    return out


def case_name(variant, batch, vocab) -> str:
    return f"{variant} B={batch} V={vocab // 1000}k"


def main(argv=None):
    p = harness.arg_parser(__doc__, "small shapes, one round (seconds)")
    p.add_argument("--rounds", type=int, default=4, help="fresh processes per setting, alternating (default 4)")
    p.add_argument("--out", type=Path, help="also write the medians and the environment to this JSON file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cases = QUICK_CASES if args.quick else CASES
    if args.child:
        print(json.dumps(child(cases)))
        return None
    env = harness.environment(rounds=1 if args.quick else args.rounds)
    print(harness.machine_line(env), flush=True)
    rounds = 1 if args.quick else args.rounds
    runs = {name: [] for name in SETTINGS}
    for _ in range(rounds):
        for name, tunables in SETTINGS.items():
            child_env = {**os.environ, "GLIBC_TUNABLES": tunables}
            cmd = [sys.executable, __file__, "--child"] + (["--quick"] if args.quick else [])
            proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    medians = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in runs.items()}
    plain, huge = medians.values()
    for case in plain:
        ratio = plain[case] / huge[case]
        print(f"{case:22s} {plain[case]:7.2f} ms with 4 KB pages, {huge[case]:7.2f} ms with huge pages ({ratio:.2f}x)")
    if args.out:
        harness.write_json(args.out, {"environment": env, "settings": SETTINGS, "median_ms": medians})
        print(f"wrote {args.out}")
    return medians


if __name__ == "__main__":
    main()
