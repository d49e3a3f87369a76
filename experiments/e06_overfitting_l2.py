"""E06: a big model on a small training set overfits; L2 regularisation holds the dev loss down.

Settings, command and expected result: configs/e06.py; the prose: templates/e06.md.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats
from common import corrected, load_corpus, parse_args, prepare, result_head, verdict_of, write_result
from configs import base, e06
from figures import e06 as figure

from jaxbackprop import rundir, train
from jaxbackprop.evaluate import evaluate
from jaxbackprop.step import make_step

NAME = "e06_overfitting_l2"
CLAIM = (
    "a big model on little data overfits (dev loss turns up); L2 keeps the dev loss down at some cost in training loss"
)


def curve(training: train.TrainConfig, prepared) -> list:
    """Train as ``train.train_and_evaluate`` does (same step; the seed's initialisation and data order),
    measuring after every epoch the cross-entropy without the penalty of the whole training set and
    of dev, dev F1, ||W||, ||U|| and the penalty. Stops early (the rows so far) if the objective
    becomes non-finite."""
    model_cfg, params = rundir.init_run_params(training, prepared)
    data_only = dataclasses.replace(model_cfg, l2=0.0)  # evaluates the cross-entropy alone
    opt_state, step = make_step(
        training, model_cfg, params, math.ceil(len(prepared.train.windows) / training.batch_size)
    )
    rows = []
    for epoch in range(1, training.epochs + 1):
        params, opt_state, objective = train.run_epoch(step, params, opt_state, prepared.train, training, epoch)
        if not math.isfinite(objective):
            break
        tr, dev = (evaluate(params, ds, prepared.tags, data_only, "argmax") for ds in (prepared.train, prepared.dev))
        w_norm, u_norm = (float(np.linalg.norm(np.asarray(params[k], np.float64))) for k in ("W", "U"))
        penalty = 0.5 * training.model.l2 * (w_norm**2 + u_norm**2)
        rows.append(
            {
                "epoch": epoch,
                "objective": objective,
                "train_loss": tr["loss"],
                "train_f1": tr["f1"],
                "dev_loss": dev["loss"],
                "dev_f1": dev["f1"],
                "w_norm": w_norm,
                "u_norm": u_norm,
                "penalty": penalty,
            }
        )
    return rows


def summarise(l2: float, rows: list) -> dict:
    """The numbers the claim is about, from one lambda's curve."""
    dev = np.array([r["dev_loss"] for r in rows])
    i_min, last, best = int(np.argmin(dev)), rows[-1], max(rows, key=lambda r: r["dev_f1"])
    return {
        "l2": l2,
        "epochs_run": len(rows),
        "min_dev_loss": float(dev[i_min]),
        "min_dev_epoch": rows[i_min]["epoch"],
        "final_dev_loss": last["dev_loss"],
        "final_train_loss": last["train_loss"],
        "dev_rise": float(last["dev_loss"] - dev[i_min]),
        "dev_rise_rel": float(last["dev_loss"] / dev[i_min] - 1),
        "train_loss_at_min_dev": rows[i_min]["train_loss"],
        "final_gap": last["dev_loss"] - last["train_loss"],
        "best_dev_f1": best["dev_f1"],
        "best_dev_f1_epoch": best["epoch"],
        "final_dev_f1": last["dev_f1"],
        "final_w_norm": last["w_norm"],
        "final_u_norm": last["u_norm"],
        "final_penalty": last["penalty"],
    }


SUMMARY_KEYS = (
    "min_dev_loss",
    "final_dev_loss",
    "dev_rise_rel",
    "final_train_loss",
    "final_gap",
    "best_dev_f1",
    "final_dev_f1",
    "final_w_norm",
)
PAIRED_KEYS = ("final_dev_loss", "dev_rise_rel", "final_gap", "final_train_loss", "best_dev_f1", "final_w_norm")


def below(iv: dict, bar: float = 0.0):
    """A part "A - B is below ``bar``": True if the interval lies below it, False above, None across."""
    return {"below": True, "above": False, "across": None}[stats.side(iv, bar)]


def all_of(*parts):
    """Parts combined: False if any failed, None if any could not be told, else True."""
    return False if False in parts else None if None in parts else True


def aggregate(runs: list, config: e06.Config) -> dict:
    """Per lambda, the interval of each summary number over the seeds; per lambda > 0, each paired
    difference lambda - 0 (seed i minus seed i) with its interval and its side of 0 -- the primary ones
    (``config.primary`` at ``config.primary_l2``) by their own interval, the others Holm-corrected."""
    of = {l2: sorted((r["summary"] for r in runs if r["l2"] == l2), key=lambda s: s["seed"]) for l2 in config.lambdas}
    per_lambda = [{"l2": l2, **{k: stats.interval([s[k] for s in of[l2]]) for k in SUMMARY_KEYS}} for l2 in of]
    flat = []
    for l2 in config.lambdas[1:]:
        for k in PAIRED_KEYS:
            d = stats.paired([s[k] for s in of[l2]], [s[k] for s in of[0.0]])
            flat.append({"name": comparison_name(l2, k), "l2": l2, "key": k, "bar": 0.0, **d, "side": stats.side(d)})
    flat = corrected(flat, [comparison_name(config.primary_l2, k) for k in config.primary])
    paired = [{"l2": l2, **{c["key"]: c for c in flat if c["l2"] == l2}} for l2 in config.lambdas[1:]]
    return {"per_lambda": per_lambda, "paired": paired}


def comparison_name(l2: float, key: str) -> str:
    """``"0.003:final_dev_loss"``: lambda ``l2`` minus lambda 0 in ``key``, paired by seed."""
    return f"{l2:g}:{key}"


def judge(runs: list, agg: dict, config: e06.Config) -> dict:
    """Each part of the claim from the intervals (see configs/e06.py for the bars)."""
    base_ = sorted((r["summary"] for r in runs if r["l2"] == 0.0), key=lambda s: s["seed"])
    rise = agg["per_lambda"][0]["dev_rise_rel"]
    falls = sum(s["final_train_loss"] < s["train_loss_at_min_dev"] for s in base_)
    train_falls = True if falls == len(base_) else False if falls == 0 else None
    p = next(row for row in agg["paired"] if row["l2"] == config.primary_l2)
    return {
        "primary_l2": config.primary_l2,
        "rise_bar": config.rise_bar,
        "rise_side": stats.side(rise, config.rise_bar),
        "train_falls_seeds": falls,
        "overfits_without_l2": all_of(stats.holds(rise, config.rise_bar), train_falls),
        "l2_reduces_overfitting": all_of(below(p["dev_rise_rel"]), below(p["final_gap"])),
        "l2_lowers_dev_loss": below(p["final_dev_loss"]),
        "l2_costs_training_fit": stats.holds(p["final_train_loss"]),
        "l2_lowers_w_norm": [row["l2"] for row in agg["paired"] if row["final_w_norm"]["side"] == "below"],
        "lambdas_lowering_dev_loss": [row["l2"] for row in agg["paired"] if row["final_dev_loss"]["side"] == "below"],
        "lambdas_raising_dev_loss": [row["l2"] for row in agg["paired"] if row["final_dev_loss"]["side"] == "above"],
        "f1_side": p["best_dev_f1"]["side"],
        "f1_peaks_after_dev_loss_minimum": sum(s["best_dev_f1_epoch"] > s["min_dev_epoch"] for s in base_),
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e06, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args, synthetic_vectors=config.synthetic_vectors)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    runs = []
    for seed in config.seeds:
        for l2 in config.lambdas:
            rows = curve(train.configure(config.training, l2=l2, seed=seed), prepared)
            runs.append({"l2": l2, "seed": seed, "summary": {"seed": seed, **summarise(l2, rows)}, "curve": rows})
            s = runs[-1]["summary"]
            print(
                f"{NAME}: seed {seed}, lambda {l2:g}: dev loss rise {s['dev_rise_rel']:+.1%}, gap {s['final_gap']:.3f}"
            )
    agg = aggregate(runs, config)
    j = judge(runs, agg, config)
    parts = [
        j[k] for k in ("overfits_without_l2", "l2_reduces_overfitting", "l2_lowers_dev_loss", "l2_costs_training_fit")
    ]
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(runs=runs, aggregate=agg, judgement=j, verdict=verdict_of(parts), seeds=list(config.seeds))
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
