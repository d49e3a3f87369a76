"""E05: zero initialisation keeps the hidden units symmetric; normal / Xavier break the symmetry.

Settings, command and expected result: configs/e05.py; the prose: templates/e05.md.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_corpus, parse_args, prepare, result_head, train_run, verdict_of, write_result
from configs import base, e05
from figures import e05 as figure

from jaxbackprop import pipeline, probes, train

NAME = "e05_initialisation"
CLAIM = "zero init keeps hidden units identical (no better than one unit); normal / Xavier break the symmetry"


def label(variant: dict) -> str:
    dropout, one = variant.get("dropout"), variant.get("hidden_dim") == 1
    return variant["init"] + (f" + dropout {dropout:g}" if dropout else "") + (" (H = 1)" if one else "")


def run_variant(config: e05.Config, prepared, activation: str, variant: dict) -> dict:
    """Train one variant (``train.train_and_evaluate``), measuring the symmetry of its hidden units
    before the watched steps and at every epoch's start (through ``on_step``) and at the best epoch."""
    training = train.configure(config.training, activation=activation, **variant)
    model_cfg = pipeline.model_config(training, prepared)
    batch = probes.first_windows(prepared.train, config.probe_windows, model_cfg)
    dev = probes.first_windows(prepared.dev, config.activation_windows, model_cfg)
    probe = lambda p: probes.symmetry_probe(p, batch, dev["windows"], model_cfg, dev.get("features"))  # noqa: E731
    steps_per_epoch, trace = math.ceil(len(prepared.train.windows) / training.batch_size), []
    calls = itertools.count()  # on_step runs before every step: the global step is the number of calls before

    def on_step(i, params):
        t = next(calls)
        if t in config.watch_steps or (t > 0 and t % steps_per_epoch == 0):
            trace.append({"step": t, "epoch": t / steps_per_epoch, **probe(params)})

    run = train_run(training, prepared, on_step=on_step)
    f1s = [h["dev_f1"] for h in run.history]
    best = probe(run.params) if run.params is not None else None
    print(f"{NAME}: {activation:<8} {label(variant):<22} dev F1 {max(f1s, default=0):.3f}")
    return {
        "activation": activation,
        **variant,
        "hidden_dim": training.model.hidden_dim,
        "dropout": training.model.dropout,
        "label": label(variant),
        "diverged": run.summary["diverged"],
        "trace": trace,
        "best": best,
        "history": [{k: h[k] for k in ("epoch", "train_loss", "dev_loss", "dev_f1")} for h in run.history],
        "best_dev_f1": run.summary.get("dev_f1", 0.0),
        "best_epoch": run.summary.get("best_epoch"),
        "test_f1": run.summary.get("test_f1"),
        "mean_dev_f1_over_epochs": float(np.mean(f1s)) if f1s else 0.0,
        "final_train_loss": run.history[-1]["train_loss"] if run.history else None,
    }


def roundoff_growth(trace: list) -> dict:
    """How the zero start's float32 round-off differences between units evolve: the first step with
    any difference, the relative difference then and at the end, the growth per 100 steps (a
    least-squares fit of log10 difference against step), and the first step past the tolerance."""
    nonzero = [p for p in trace if p["max_unit_difference_rel"] > 0]
    if not nonzero:
        return {"bit_identical": True}
    steps, logs = [p["step"] for p in nonzero], np.log10([p["max_unit_difference_rel"] for p in nonzero])
    slope = float(np.polyfit(steps, logs, 1)[0]) if len(nonzero) > 2 else float("nan")
    return {
        "bit_identical": False,
        "first_step": nonzero[0]["step"],
        "first_rel": nonzero[0]["max_unit_difference_rel"],
        "end_rel": trace[-1]["max_unit_difference_rel"],
        "growth_per_100_steps": 10 ** (100 * slope),
        "first_step_past_tolerance": next((p["step"] for p in trace if p["distinct_units"] > 1), None),
    }


def judge(runs: list, activation: str, H: int) -> dict:
    """Each part of the claim for one activation, decided from the numbers."""
    mine = {r["label"]: r for r in runs if r["activation"] == activation}
    z, nrm, xav, one = (mine[k] for k in ("zeros", "normal", "xavier", "xavier (H = 1)"))
    zd = next(r for r in mine.values() if r["init"] == "zeros" and r["dropout"])
    return {
        "zeros_stay_symmetric": all(p["distinct_units"] == 1 and p["W_rank"] <= 1 for p in [*z["trace"], z["best"]]),
        "zeros_identical_gradients": all(p["distinct_grad_W_rows"] == 1 for p in z["trace"]),
        "random_inits_break_symmetry": all(p["distinct_units"] == H for r in (nrm, xav) for p in r["trace"]),
        "zeros_no_better_than_one_unit": z["best_dev_f1"] <= one["best_dev_f1"] + 0.02,
        "xavier_trains_well": xav["best_dev_f1"] >= max(nrm["best_dev_f1"], z["best_dev_f1"]) - 0.01
        and xav["best_dev_f1"] >= z["best_dev_f1"] + 0.1,
        "dropout_breaks_symmetry": zd["best"]["distinct_units"] > 1,
        "zeros_roundoff": roundoff_growth(z["trace"]),
        "zeros_trace": trace_summary(z["trace"]),
        "best_dev_f1": {
            k: r["best_dev_f1"] for k, r in (("zeros", z), ("normal", nrm), ("xavier", xav), ("one_unit", one))
        },
        "mean_dev_f1": {k: r["mean_dev_f1_over_epochs"] for k, r in (("normal", nrm), ("xavier", xav))},
        "dropout": zd["dropout"],
        "dropout_distinct_units": zd["best"]["distinct_units"],
    }


def trace_summary(trace: list) -> dict:
    """What the zero start's measurements show, over all of them: the numbers the section quotes."""
    most = lambda k: max(p[k] for p in trace)  # noqa: E731
    return {
        "points": len(trace),
        "first_step": trace[0]["step"],
        "last_step": trace[-1]["step"],
        "distinct_units": sorted({p["distinct_units"] for p in trace}),
        "distinct_grad_W_rows": sorted({p["distinct_grad_W_rows"] for p in trace}),
        "max_sv2_over_sv1": most("W_sv2_over_sv1"),
        "max_h_std": most("h_std_across_units"),
        "max_grad_W_norm": most("grad_W_norm"),
        "first_W_move": next((p["step"] for p in trace if p["W_norm"] > 0), None),
        "end": {k: trace[-1][k] for k in ("h_mean_abs", "W_norm", "U_norm", "grad_W_row_spread", "grad_W_norm")},
    }


JUDGED = ("zeros_stay_symmetric", "zeros_identical_gradients", "random_inits_break_symmetry")
JUDGED += ("zeros_no_better_than_one_unit", "xavier_trains_well")


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e05, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    runs = [run_variant(config, prepared, a, v) for a in config.activations for v in config.variants]
    parts = {a: judge(runs, a, config.training.model.hidden_dim) for a in config.activations}
    held = [bool(p[k]) for p in parts.values() for k in JUDGED]
    verdict = verdict_of(held)
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(same_unit_rtol=probes.SAME_UNIT_RTOL, runs=runs, parts=parts, verdict=verdict)
    result.update(seeds=[config.training.seed], plots=figure.draw(result, args.out))
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
