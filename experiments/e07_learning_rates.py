"""E07: learning rates -- too large fails, too small crawls; does a decaying rate beat a constant one?

Settings, command and expected result: configs/e07.py; the prose: templates/e07.md. The rate
table is a sweep and writes its own files (results.csv/json, curves.json/png, heatmap.png,
config.json) into ``sweep_rates/`` of the output folder; the schedule arms are in result.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schedules
import stats
from common import corrected, load_corpus, parse_args, prepare, result_head, verdict_of, write_result
from configs import base, e07
from figures import e07 as figure

from jaxbackprop import files, sweep, train

NAME = "e07_learning_rates"
CLAIM = "too large a rate fails, too small crawls; a decaying rate beats a constant one (at a tuned rate)"
LR_POINTS = 200  # the schedules' rates kept per run for the plot


def run_rates(config: e07.Config, prepared, out_dir: Path) -> list:
    """The rate table (every rate x every selection seed, constant) by ``sweep.run_sweep``; one row per run."""
    table = [
        {"learning_rate": lr, "schedule": "constant", "seed": s} for lr in config.rates for s in config.selection_seeds
    ]
    rows = sweep.run_sweep(table, prepared, out_dir, base=config.training, log=lambda line: None, overwrite=True)
    curves = [c["epochs"] for c in files.read_json(out_dir / "curves.json")]
    return [{**row, "curve": c, **final_scores(c, row["diverged"])} for row, c in zip(rows, curves)]


def final_scores(curve: list, diverged: bool) -> dict:
    """A run's last-epoch numbers; a diverged run scores dev F1 0 and has no training loss."""
    if diverged or not curve:
        return {"final_dev_f1": 0.0, "final_train_loss": None}
    return {"final_dev_f1": curve[-1]["dev_f1"], "final_train_loss": curve[-1]["train_loss"]}


def summarise_rates(runs: list, config: e07.Config) -> tuple[list, float]:
    """Per rate: its seeds' final dev F1 and training loss, with intervals; and the tuned rate
    (the best mean final dev F1, a diverged seed counting 0). Then each rate's failures: diverged
    (a non-finite loss), collapsed (a finite loss, the final dev F1 *fell* below ``collapse_fraction``
    of the run's own best epoch's), or -- above the tuned rate only -- stuck (a final dev F1 below
    ``collapse_fraction`` of the tuned rate's mean without falling). Below the tuned rate such a run
    is slow (``slow``), not failed: it crawls, which is the other part of the claim."""
    out = []
    for lr in config.rates:
        mine = sorted((r for r in runs if r["learning_rate"] == lr), key=seed_of)
        losses = [r["final_train_loss"] for r in mine if r["final_train_loss"] is not None]
        out.append(
            {
                "learning_rate": lr,
                "seeds": [r["seed"] for r in mine],
                "final_dev_f1": [r["final_dev_f1"] for r in mine],
                "final_train_loss": [r["final_train_loss"] for r in mine],
                "f1": stats.interval([r["final_dev_f1"] for r in mine]),
                "train_loss": stats.interval(losses) if losses else None,
                "diverged": sum(r["diverged"] for r in mine),
                "diverged_epochs": [r["diverged_epoch"] for r in mine if r["diverged"]],
            }
        )
    tuned = max(out, key=lambda r: r["f1"]["mean"])
    floor = config.collapse_fraction * tuned["f1"]["mean"]
    for r, lr in zip(out, config.rates):
        mine = sorted((x for x in runs if x["learning_rate"] == lr and x["final_train_loss"] is not None), key=seed_of)
        fell = [fell_from_best(x["curve"], config.collapse_fraction) for x in mine]
        low = [x["final_dev_f1"] < floor and not f for x, f in zip(mine, fell)]
        r["side_of_tuned"] = "tuned" if r is tuned else "above" if lr > tuned["learning_rate"] else "below"
        r["collapsed"], r["stuck"] = sum(fell), sum(low) if r["side_of_tuned"] == "above" else 0
        r["slow"] = sum(low) if r["side_of_tuned"] == "below" else 0
        r["failed"] = r["diverged"] + r["collapsed"] + r["stuck"]
        r["collapse_rule"] = "fell"  # collapsed: below its own best epoch (earlier results: below the tuned mean)
    return out, tuned["learning_rate"]


def seed_of(run: dict) -> int:
    return run["seed"]


def fell_from_best(curve: list, fraction: float) -> bool:
    """Whether a run's final dev F1 fell below ``fraction`` of its best epoch's: a collapse, not slowness.

    >>> fell_from_best([{"dev_f1": 0.6}, {"dev_f1": 0.2}], 0.5), fell_from_best([{"dev_f1": 0.1}, {"dev_f1": 0.3}], 0.5)
    (True, False)
    """
    return bool(curve) and curve[-1]["dev_f1"] < fraction * max(e["dev_f1"] for e in curve)


def crawl(rates: list, tuned: float) -> dict:
    """The smallest rate's final training loss over the tuned rate's, seed by seed, with its interval."""
    small, best = rates[0], next(r for r in rates if r["learning_rate"] == tuned)
    ratios = [a / b for a, b in zip(small["final_train_loss"], best["final_train_loss"]) if None not in (a, b)]
    return {"rate": small["learning_rate"], "ratios": ratios, **stats.interval(ratios)}


def too_large(rates: list, config: e07.Config) -> dict:
    """The rates above the tuned one that failed, and whether the claim's part holds: True if one
    failed in every seed, False if none failed in any, None (not resolved) in between."""
    above = [r for r in rates if r["side_of_tuned"] == "above"]
    n = len(config.selection_seeds)
    every = [r["learning_rate"] for r in above if r["failed"] == n]
    some = [r["learning_rate"] for r in above if 0 < r["failed"]]
    holds = True if every else (None if some else False)
    return {"failed_every_seed": every, "failed_some_seed": some, "seeds": n, "holds": holds}


def high_rate(rates: list):
    """The largest rate above the tuned one whose loss stayed finite in every seed (None: there is none)."""
    finite = [r["learning_rate"] for r in rates if r["side_of_tuned"] == "above" and r["diverged"] == 0]
    return max(finite) if finite else None


def run_arms(config: e07.Config, rate: float, arms: tuple, stage: str, prepared) -> list:
    """Every arm at peak rate ``rate`` with every comparison seed (:func:`schedules.train_arm`)."""
    runs = []
    for arm in arms:
        for seed in config.comparison_seeds:
            run = schedules.train_arm(train.configure(config.training, learning_rate=rate, seed=seed), arm, prepared)
            runs.append({"stage": stage, **run, **final_scores(run["curve"], run["diverged_epoch"] is not None)})
        f1 = np.mean([r["final_dev_f1"] for r in runs[-len(config.comparison_seeds) :]])
        print(f"{NAME}: {stage} rate {rate:g}, {arm}: mean final dev F1 {f1:.4f}")
    return runs


def summarise_arms(runs: list, config: e07.Config) -> list:
    """Per (stage, arm): final dev F1 and training loss with intervals, and its rate per step (thinned)."""
    out = []
    for stage, arm in dict.fromkeys((r["stage"], r["schedule"]) for r in runs):
        mine = sorted((r for r in runs if (r["stage"], r["schedule"]) == (stage, arm)), key=lambda r: r["seed"])
        losses = [r["final_train_loss"] for r in mine if r["final_train_loss"] is not None]
        rate, steps = mine[0]["learning_rate"], mine[0]["steps_per_epoch"]
        table = schedules.rate_table(train.configure(config.training, learning_rate=rate), arm, steps)
        stride = max(1, len(table) // LR_POINTS)
        out.append(
            {
                "stage": stage,
                "schedule": arm,
                "learning_rate": rate,
                "f1": stats.interval([r["final_dev_f1"] for r in mine]),
                "train_loss": stats.interval(losses) if losses else None,
                "diverged": sum(r["diverged_epoch"] is not None for r in mine),
                "lr_step_stride": stride,
                "lr_per_step": table[::stride].tolist(),
            }
        )
    return out


def compare(runs: list, stage: str, pairs: list, bar: float) -> list:
    """Arm A minus arm B, final dev F1, paired by seed, for each (A, B) of ``pairs`` in ``stage``."""
    out = []
    for a, b in pairs:
        f1 = {
            arm: [
                r["final_dev_f1"]
                for r in sorted(runs, key=lambda r: r["seed"])
                if (r["stage"], r["schedule"]) == (stage, arm)
            ]
            for arm in (a, b)
        }
        d = stats.paired(f1[a], f1[b])
        out.append({"name": f"{stage}:{a}-{b}", "stage": stage, "a": a, "b": b, "bar": bar, **d})
        out[-1]["side"] = stats.side(d, bar)
    return out


def pairs_of(arms: tuple) -> list:
    """Each arm against constant; warm-up + cosine against warm-up alone (the decay after a warm-up)."""
    pairs = [(a, "constant") for a in arms if a != "constant"]
    if {"warmup_cosine", "warmup_constant"} <= set(arms):
        pairs.append(("warmup_cosine", "warmup_constant"))
    return pairs


def warmup(comparisons: list) -> dict:
    """The secondary observation at the high rate: warm-up alone vs constant, and the decay after a warm-up."""
    at = {(c["a"], c["b"]): c for c in comparisons if c["stage"] == "high"}
    out = {}
    for name, pair in (
        ("alone", ("warmup_constant", "constant")),
        ("decay_after", ("warmup_cosine", "warmup_constant")),
    ):
        if pair in at:
            c = at[pair]
            out[name] = {k: c[k] for k in ("mean", "low", "high", "side")} | {"helps": c["side"] == "above"}
    return out


def judge(rates: list, tuned: float, comparisons: list, config: e07.Config) -> dict:
    large, slow = too_large(rates, config), crawl(rates, tuned)
    primary = next(c for c in comparisons if c["name"] == config.primary[0])
    decays = [c for c in comparisons if c["stage"] == "tuned" and c["b"] == "constant" and c["a"] in schedules.DECAYS]
    return {
        "tuned_rate": tuned,
        "too_large": large,
        "crawl": slow,
        "crawls": stats.holds(slow, config.crawl_factor),
        "decay": {k: primary[k] for k in ("a", "mean", "low", "high", "wins", "n", "side")},
        "decay_holds": stats.holds(primary, config.bar),
        "decay_worse": primary["side"] == "below",
        "decays_above": [c["a"] for c in decays if c["side"] == "above"],
        "decays_below": [c["a"] for c in decays if c["side"] == "below"],
        "decays_across": [c["a"] for c in decays if c["side"] == "across"],
        "warmup": warmup(comparisons),
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e07, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    rate_runs = run_rates(config, prepared, args.out / "sweep_rates")
    rates, tuned = summarise_rates(rate_runs, config)
    print(
        f"{NAME}: tuned rate {tuned:g} ("
        + ", ".join(f"{r['learning_rate']:g}: {r['f1']['mean']:.3f}" for r in rates)
        + ")"
    )
    arm_runs = run_arms(config, tuned, config.arms, "tuned", prepared)
    comparisons = compare(arm_runs, "tuned", pairs_of(config.arms), config.bar)
    high = high_rate(rates)
    if high is not None:  # the secondary observation: warm-up where a constant rate struggles
        high_runs = run_arms(config, high, config.high_arms, "high", prepared)
        comparisons += compare(high_runs, "high", pairs_of(config.high_arms), config.bar)
        arm_runs += high_runs
    comparisons = corrected(comparisons, config.primary)  # the primary by its interval, the others Holm-corrected
    j = judge(rates, tuned, comparisons, config)
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(steps_per_epoch=arm_runs[0]["steps_per_epoch"], rate_runs=rate_runs, rates=rates)
    result.update(arm_runs=arm_runs, arms=summarise_arms(arm_runs, config), comparisons=comparisons, judgement=j)
    result["high_rate"] = high
    result["verdict"] = verdict_of([j["too_large"]["holds"], j["crawls"], j["decay_holds"]])
    result["seeds"] = sorted({*config.selection_seeds, *config.comparison_seeds})
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
