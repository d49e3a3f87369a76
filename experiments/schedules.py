"""E07's summaries of a schedule sweep over seeds: mean curves and final scores per (schedule, peak
rate), and whether the step schedule's gain over the constant one clears the seed noise."""

from __future__ import annotations

import math

import numpy as np
from configs import e07

from jaxbackprop import optim, train


def mean(xs):
    return float(np.mean(xs)) if xs else None


def schedule_summary(config: e07.Config, rows: list, steps_per_epoch: int) -> list:
    """Per (schedule, peak rate): mean and spread over seeds of the final and best dev F1 and the final
    training loss, the mean curve, and the schedule itself per step (every ``stride``-th, for the plot)."""
    out, stride = [], max(1, steps_per_epoch // 20)
    for s, peak in dict.fromkeys((r["schedule"], r["learning_rate"]) for r in rows):
        alive = [r for r in rows if (r["schedule"], r["learning_rate"]) == (s, peak) and not r["diverged"]]
        final = [r["curve"][-1]["dev_f1"] for r in alive]
        schedule = optim.make_schedule(
            train.configure(config.training, schedule=s, learning_rate=peak), steps_per_epoch
        )
        n = len(alive[0]["curve"]) if alive else 0
        curve = [
            {k: mean([r["curve"][i][k] for r in alive]) for k in ("epoch", "train_loss", "dev_f1")} for i in range(n)
        ]
        out.append(
            {
                "schedule": s,
                "learning_rate": peak,
                "diverged": len(config.seeds) - len(alive),
                "final_dev_f1": final,
                "mean_final_dev_f1": mean(final),
                "sd_final_dev_f1": float(np.std(final, ddof=1)) if len(final) > 1 else 0.0,
                "mean_best_dev_f1": mean([r["best_dev_f1"] for r in alive]),
                "mean_final_train_loss": mean([r["final_train_loss"] for r in alive]),
                "mean_curve": curve,
                "lr_step_stride": stride,
                "lr_per_step": [float(schedule(t)) for t in range(0, config.training.epochs * steps_per_epoch, stride)],
            }
        )
    return out


def step_vs_constant(schedules: list, rate: float, config: e07.Config) -> dict | None:
    """Step minus constant at one peak rate: final dev F1 gain, the noise threshold it must clear
    (2 standard errors of the difference of two seed means, at least ``min_f1_gain``), loss ratio."""
    by = {s["schedule"]: s for s in schedules if s["learning_rate"] == rate}
    const, step = by.get("constant"), by.get("step")
    if not (const and step) or None in (const["mean_final_dev_f1"], step["mean_final_dev_f1"]):
        return None
    se = math.sqrt(sum(x["sd_final_dev_f1"] ** 2 / len(x["final_dev_f1"]) for x in (const, step)))
    return {
        "rate": rate,
        "f1_gain": step["mean_final_dev_f1"] - const["mean_final_dev_f1"],
        "standard_error": se,
        "threshold": max(2 * se, config.min_f1_gain),
        "seeds": len(step["final_dev_f1"]),
        "train_loss_ratio": step["mean_final_train_loss"] / const["mean_final_train_loss"],
    }
