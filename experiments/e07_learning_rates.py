"""E07: learning rates -- too large diverges, too small crawls; a decaying rate beats a constant one.

Settings, command and expected result: configs/e07.py; the prose: templates/e07.md. Each sweep
writes its own files (results.csv/json, curves.json/png, heatmap.png, config.json) into
``sweep_rates/`` and ``sweep_schedules/`` of the output folder.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_corpus, parse_args, prepare, result_head, write_result
from configs import base, e07
from figures import e07 as figure
from schedules import schedule_summary, step_vs_constant

from jaxbackprop import files, sweep

NAME = "e07_learning_rates"
CLAIM = "too large a rate diverges, too small crawls; a decaying rate beats a constant one; cyclic is an alternative"


def run_table(table: list, prepared, config: e07.Config, out_dir: Path) -> list:
    """``sweep.run_sweep``, then each row with its per-epoch curve (from the sweep's curves.json)."""
    rows = sweep.run_sweep(table, prepared, out_dir, base=config.training, log=lambda line: None, overwrite=True)
    curves = [c["epochs"] for c in files.read_json(out_dir / "curves.json")]
    return [
        {**row, "curve": c, "final_dev_f1": None if row["diverged"] else c[-1]["dev_f1"]}
        for row, c in zip(rows, curves)
    ]


def judge(rates: list, schedules: list, high: float, tuned: float, config: e07.Config) -> dict:
    alive = [r for r in rates if not r["diverged"]]
    best = min(alive, key=lambda r: r["final_train_loss"])
    tuned_loss = next(r["final_train_loss"] for r in alive if r["learning_rate"] == tuned)
    at_high = {s["schedule"]: s for s in schedules if s["learning_rate"] == high and s["mean_final_dev_f1"] is not None}
    const = at_high.get("constant", {}).get("mean_final_dev_f1")
    high_cmp, tuned_cmp = step_vs_constant(schedules, high, config), step_vs_constant(schedules, tuned, config)
    return {
        "largest_rate_diverged": rates[-1]["diverged"],
        "diverged_rates": [r["learning_rate"] for r in rates if r["diverged"]],
        "smallest_rate_crawls": not rates[0]["diverged"]
        and rates[0] is not best
        and rates[0]["final_train_loss"] >= config.crawl_factor * best["final_train_loss"],
        "crawl_ratio": rates[0]["final_train_loss"] / best["final_train_loss"]
        if rates[0]["final_train_loss"]
        else None,
        "best_rate_by_train_loss": best["learning_rate"],
        "high_rate": high,
        "tuned_rate": tuned,
        "tuned_is_high": tuned == high,
        # too large without NaN: above the tuned rate, alive, but far behind it on the training loss
        "stalled_large_rates": [
            {"rate": r["learning_rate"], "ratio": r["final_train_loss"] / tuned_loss, "best_dev_f1": r["best_dev_f1"]}
            for r in alive
            if r["learning_rate"] > tuned and r["final_train_loss"] >= config.crawl_factor * tuned_loss
        ],
        "step_vs_constant_at_high": high_cmp,
        "step_vs_constant_at_tuned": None if tuned == high else tuned_cmp,
        "step_beats_constant": bool(high_cmp and high_cmp["f1_gain"] > 0 and high_cmp["train_loss_ratio"] < 1),
        "step_gain_beyond_noise": bool(high_cmp and high_cmp["f1_gain"] > high_cmp["threshold"]),
        "step_worse_at_tuned": bool(tuned != high and tuned_cmp and tuned_cmp["f1_gain"] < -tuned_cmp["threshold"]),
        "gains_over_constant_at_high": [
            {"schedule": k, "gain": s["mean_final_dev_f1"] - const}
            for k, s in at_high.items()
            if k != "constant" and const is not None
        ],
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e07, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    steps_per_epoch = math.ceil(len(prepared.train.windows) / config.training.batch_size)
    rate_table = [{"learning_rate": lr, "schedule": "constant"} for lr in config.rates]
    rates = run_table(rate_table, prepared, config, args.out / "sweep_rates")
    alive = [r for r in rates if not r["diverged"]]
    if not alive:
        raise SystemExit(f"{NAME}: every rate of {config.rates} diverged; add smaller ones")
    high, tuned = max(r["learning_rate"] for r in alive), max(alive, key=lambda r: r["final_dev_f1"])["learning_rate"]
    table = [{"learning_rate": high, "schedule": s, "seed": seed} for s in config.schedules for seed in config.seeds]
    if tuned != high:  # constant vs step at the tuned rate too
        table += [
            {"learning_rate": tuned, "schedule": s, "seed": seed} for s in ("constant", "step") for seed in config.seeds
        ]
    schedules = schedule_summary(
        config, run_table(table, prepared, config, args.out / "sweep_schedules"), steps_per_epoch
    )
    checks = judge(rates, schedules, high, tuned, config)
    held = [checks["largest_rate_diverged"], checks["smallest_rate_crawls"], checks["step_beats_constant"]]
    if all(held) and checks["step_gain_beyond_noise"] and not checks["step_worse_at_tuned"]:
        verdict = "supported"
    else:
        verdict = "partly supported" if any(held) else "not supported"
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(steps_per_epoch=steps_per_epoch, tables={"rates": rate_table, "schedules": table}, rates=rates)
    result.update(
        schedules=schedules, checks=checks, verdict=verdict, seeds=sorted({config.training.seed, *config.seeds})
    )
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
