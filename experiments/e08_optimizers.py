"""E08: plain SGD works but needs a carefully tuned learning rate; adaptive optimizers are robust.

Settings, command and expected result: configs/e08.py; the prose: templates/e08.md. Files:
result.json, f1_vs_rate.png, and run_sweep's own files in ``sweep/``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_corpus, parse_args, prepare, result_head, verdict_of, write_result
from configs import base, e08
from figures import e08 as figure

from jaxbackprop import sweep

NAME = "e08_optimizers"
CLAIM = "SGD needs a tuned learning rate; adaptive optimizers are robust across rates and good out of the box"
ADAPTIVE = ("adagrad", "rmsprop", "adam", "adamw")


def robustness(rows: list, config: e08.Config) -> dict:
    """Per optimizer: best F1 and its rate, the rates within ``band`` of it, divergences, F1 at the default rate."""
    out, defaults = {}, dict(config.default_rates)
    for opt in config.optimizers:
        mine = sorted((r for r in rows if r["optimizer"] == opt), key=lambda r: r["learning_rate"])
        f1 = {r["learning_rate"]: None if r["diverged"] else r["best_dev_f1"] for r in mine}
        alive = {lr: v for lr, v in f1.items() if v is not None}
        best_lr = max(alive, key=alive.get) if alive else None
        good = [lr for lr, v in alive.items() if v >= alive[best_lr] - config.band]
        loose = [lr for lr, v in alive.items() if v >= alive[best_lr] - config.loose_band]
        grid = [r["learning_rate"] for r in mine]
        out[opt] = {
            "best_f1": alive.get(best_lr),
            "best_rate": best_lr,
            "good_rates": good,
            "n_good": len(good),
            "width_decades": len(good) / config.per_decade,  # each grid rate stands for 1/per_decade decades
            "width_decades_loose": len(loose) / config.per_decade,
            "contiguous": bool(good) and grid.index(good[-1]) - grid.index(good[0]) + 1 == len(good),
            "diverged_rates": [r["learning_rate"] for r in mine if r["diverged"]],
            "f1_by_rate": {f"{lr:g}": v for lr, v in f1.items()},
            "default_rate": defaults.get(opt),
            "f1_at_default": f1.get(defaults.get(opt)),
        }
    return out


def judge(rob: dict, config: e08.Config) -> dict:
    """The numbers the verdict rests on; each part is a comparison, never a constant."""
    overall = max(v["best_f1"] for v in rob.values() if v["best_f1"] is not None)
    sgd, adaptive = rob.get("sgd"), [o for o in ADAPTIVE if o in rob and rob[o]["best_f1"] is not None]
    width = float(np.mean([rob[o]["width_decades"] for o in adaptive])) if adaptive else float("nan")
    loose = float(np.mean([rob[o]["width_decades_loose"] for o in adaptive])) if adaptive else float("nan")
    # "good out of the box": the default rate lands within the band of the optimizer's best
    at_default = {
        o: r["f1_at_default"] is not None and r["f1_at_default"] >= r["best_f1"] - config.band for o, r in rob.items()
    }
    return {
        "overall_best_f1": overall,
        "sgd_reaches_best": bool(sgd and sgd["best_f1"] is not None and sgd["best_f1"] >= overall - config.band),
        "adaptive_mean_width_decades": width,
        "adaptive_mean_width_decades_loose": loose,
        # wider by at least one grid cell: a difference below the grid's resolution is no difference
        "adaptive_wider": bool(sgd and adaptive and width >= sgd["width_decades"] + 1 / config.per_decade),
        "sgd_diverged": len(sgd["diverged_rates"]) if sgd else None,
        "adaptive_diverged": sum(len(rob[o]["diverged_rates"]) for o in adaptive),
        "good_at_default": at_default,
        "adaptive_good_at_default": sum(at_default[o] for o in adaptive),
        "adaptive_count": len(adaptive),
        "sgd_good_at_default": bool(at_default.get("sgd")),
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e08, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    corpus = corpus._replace(dev=corpus.dev[: config.dev_sentences])
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    table = [{"optimizer": o, "learning_rate": lr} for o in config.optimizers for lr in config.learning_rates]
    log = (lambda *_: None) if args.quick else print
    rows = sweep.run_sweep(table, prepared, args.out / "sweep", base=config.training, log=log, overwrite=True)
    rob = robustness(rows, config)
    j = judge(rob, config)
    held = [j["sgd_reaches_best"], j["adaptive_wider"], j["adaptive_good_at_default"] > j["adaptive_count"] / 2]
    verdict = verdict_of(held)
    keep = ("optimizer", "learning_rate", "best_dev_f1", "best_epoch", "final_train_loss", "diverged", "diverged_epoch")
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(runs=[{k: r[k] for k in keep} for r in rows], robustness=rob, judgement=j, verdict=verdict)
    # one (group, seconds) pair per stacked program: a group split into chunks has several
    result["sweep_seconds"] = sum(sec for _, sec in {(r["group"], r["group_seconds"]) for r in rows})
    result["sweep_runs"] = len(rows)
    result.update(seeds=[config.training.seed], plots=figure.draw(result, args.out))
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
