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
from common import load_corpus, parse_args, prepare, result_head, write_result
from configs import base, e06
from figures import e06 as figure

from jaxbackprop import rundir, train
from jaxbackprop.evaluate import evaluate
from jaxbackprop.step import make_step

NAME = "e06_overfitting_l2"
CLAIM = (
    "a big model on little data overfits (dev loss turns up); L2 keeps the dev loss down at some cost in training loss"
)
RISE_THRESHOLD = 0.05  # a dev loss that ends > 5% above its minimum has "turned up", not jittered


def curve(training: train.TrainConfig, prepared) -> list:
    """Train as ``train.train_and_evaluate`` does (same step, same shuffles), measuring after every
    epoch the cross-entropy without the penalty of the whole training set and of dev, dev F1, ||W||,
    ||U|` and the penalty. Stops early (the rows so far) if the objective becomes non-finite."""
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


def judge(rows: list) -> dict:
    """Each part of the claim, from the per-lambda summaries (rows[0]: lambda = 0)."""
    base_, regs = rows[0], rows[1:]
    helps = [
        r["l2"] for r in regs if r["final_dev_loss"] < base_["final_dev_loss"] and r["final_gap"] < base_["final_gap"]
    ]
    strongest, top = max(rows, key=lambda r: r["l2"]), max(rows, key=lambda r: r["best_dev_f1"])
    return {
        "overfits_without_l2": base_["dev_rise_rel"] > RISE_THRESHOLD
        and base_["final_train_loss"] < base_["train_loss_at_min_dev"],
        "l2_lowers_w_norm": all(r["final_w_norm"] < base_["final_w_norm"] for r in regs),
        "lambdas_that_help": helps,
        "l2_holds_dev_down": bool(helps),
        "largest_lambda": strongest["l2"],
        "largest_lambda_highest_train_loss": strongest["final_train_loss"] == max(r["final_train_loss"] for r in rows),
        "largest_lambda_not_best_dev": strongest["min_dev_loss"] > min(r["min_dev_loss"] for r in rows),
        "best_f1_lambda": top["l2"],
        "best_f1": top["best_dev_f1"],
        "f1_gain_small": top["best_dev_f1"] - base_["best_dev_f1"] < 0.02,
        "f1_peaks_after_dev_loss_minimum": base_["best_dev_f1_epoch"] > base_["min_dev_epoch"],
        "rise_threshold": RISE_THRESHOLD,
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e06, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args, synthetic_vectors=config.synthetic_vectors)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    runs = []
    for l2 in config.lambdas:
        rows = curve(train.configure(config.training, l2=l2), prepared)
        runs.append({"l2": l2, "summary": summarise(l2, rows), "curve": rows})
        print(f"{NAME}: lambda {l2:g}: final dev loss {runs[-1]['summary']['final_dev_loss']:.4f}")
    checks = judge([r["summary"] for r in runs])
    if checks["overfits_without_l2"] and checks["l2_holds_dev_down"] and checks["largest_lambda_highest_train_loss"]:
        verdict = "supported"
    else:
        verdict = (
            "partly supported" if checks["overfits_without_l2"] or checks["l2_holds_dev_down"] else "not supported"
        )
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(runs=runs, checks=checks, verdict=verdict, seeds=[config.training.seed])
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
