"""E04: the choice of nonlinearity f -- saturation, gradient flow to the first layer, dead units.

Settings, command and expected result: configs/e04.py; the prose: templates/e04.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_corpus, parse_args, prepare, result_head, train_run, verdict_of, write_result
from configs import base, e04
from figures import e04 as figure

from jaxbackprop import probes, rundir, train

NAME = "e04_nonlinearities"
CLAIM = "sigmoid starves the first layer; ReLU-family units train faster; (hard)tanh is fine; leaky units never die"
RELU_FAMILY, TANH_FAMILY = ("relu", "leaky_relu", "prelu"), ("tanh", "hardtanh")


def run_activation(config: e04.Config, prepared, activation: str) -> dict:
    """Train with ``activation``; probe the first layer at initialisation and at the best dev epoch."""
    training = train.configure(config.training, activation=activation)
    model_cfg, params = rundir.init_run_params(training, prepared)  # the very params training starts from
    batch = probes.first_windows(prepared.train, config.probe_windows, model_cfg)
    dev = probes.first_windows(prepared.dev, config.dead_windows, model_cfg)
    probe = lambda p: probes.first_layer_probe(p, batch, dev["windows"], model_cfg, dev.get("features"))  # noqa: E731
    at_init = probe(params)
    run = train_run(training, prepared)
    f1s = [h["dev_f1"] for h in run.history]
    row = {
        "activation": activation,
        "diverged": run.summary["diverged"],
        "history": [{k: h[k] for k in ("epoch", "train_loss", "dev_loss", "dev_f1")} for h in run.history],
        "best_dev_f1": run.summary.get("dev_f1", 0.0),
        "best_epoch": run.summary.get("best_epoch"),
        "test_f1": run.summary.get("test_f1"),
        "mean_dev_f1_over_epochs": float(np.mean(f1s)) if f1s else 0.0,  # higher: learnt sooner
        "final_train_loss": run.history[-1]["train_loss"] if run.history else None,
        "at_init": at_init,
        "trained": probe(run.params) if run.params is not None else dict.fromkeys(at_init),  # None: no epoch
    }
    print(f"{NAME}: {activation:<10} best dev F1 {row['best_dev_f1']:.3f}, ||dJ/dW|| at init {at_init['grad_W']:.3g}")
    return row


def judge(runs: list) -> dict:
    """Each part of the claim, decided from the numbers (False where its activations did not run)."""
    by = {r["activation"]: r for r in runs}
    others = [a for a in by if a != "sigmoid"]
    speed = {a: r["mean_dev_f1_over_epochs"] for a, r in by.items()}
    loss = {a: r["final_train_loss"] if r["final_train_loss"] is not None else float("inf") for a, r in by.items()}
    relu, tanh = [speed[a] for a in RELU_FAMILY if a in by], [speed[a] for a in TANH_FAMILY if a in by]
    sigmoid = "sigmoid" in by and bool(others)
    top = max(by, key=lambda a: by[a]["best_dev_f1"])
    relu_dead = by["relu"]["trained"]["dead_fraction"] if "relu" in by else None
    return {
        "sigmoid_smallest_first_layer_gradient": sigmoid
        and all(by["sigmoid"]["at_init"]["grad_W"] < by[a]["at_init"]["grad_W"] for a in others),
        # slowest: the highest final training loss, and no activation with a lower mean dev F1 over the epochs
        "sigmoid_slowest": sigmoid and all(speed["sigmoid"] <= speed[a] and loss["sigmoid"] > loss[a] for a in others),
        "relu_family_at_least_as_fast_as_tanh_family": bool(relu and tanh) and np.mean(relu) >= np.mean(tanh),
        "relu_family_mean_speed": float(np.mean(relu)) if relu else None,
        "tanh_family_mean_speed": float(np.mean(tanh)) if tanh else None,
        # "(hard)tanh is fine": within 0.05 dev F1 of the best activation
        "tanh_family_fine": bool(tanh)
        and all(by[a]["best_dev_f1"] >= by[top]["best_dev_f1"] - 0.05 for a in TANH_FAMILY if a in by),
        "best": top,
        "fastest": max(by, key=lambda a: speed[a]),
        "relu_dead_fraction": relu_dead,
        "relu_dead_below_1pc": relu_dead is not None and relu_dead < 0.01,
        "leaky_prelu_dead_free": all(
            by[a]["trained"]["dead_fraction"] == 0 for a in ("leaky_relu", "prelu") if a in by
        ),
        "by": {
            a: {"init": r["at_init"], "trained": r["trained"], "best_dev_f1": r["best_dev_f1"]} for a, r in by.items()
        },
    }


JUDGED = ("sigmoid_smallest_first_layer_gradient", "sigmoid_slowest", "relu_family_at_least_as_fast_as_tanh_family")
JUDGED += ("tanh_family_fine",)


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e04, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    runs = [run_activation(config, prepared, a) for a in config.activations]
    parts = judge(runs)
    held = [bool(parts[k]) for k in JUDGED]
    verdict = verdict_of(held)
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(runs=runs, parts=parts, verdict=verdict, seeds=[config.training.seed])
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
