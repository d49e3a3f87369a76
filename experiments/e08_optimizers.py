"""E08: plain SGD works but needs a carefully tuned learning rate; adaptive optimizers are robust.

Settings, command and expected result: configs/e08.py; the prose: templates/e08.md. Files:
result.json, optimizers.png, and run_sweep's own files in ``sweep/`` (tuning) and ``confirm/``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats
from common import corrected, load_corpus, parse_args, prepare, result_head, verdict_of, write_result
from configs import base, e08
from figures import e08 as figure

from jaxbackprop import sweep

NAME = "e08_optimizers"
CLAIM = "SGD needs a tuned learning rate; adaptive optimizers are robust across rates and good out of the box"
ADAPTIVE = ("adagrad", "rmsprop", "adam", "adamw")
SIDE_HOLDS = {"above": True, "below": False, "across": None}  # A - B against its bar -> the part held?


def f1_of(row: dict) -> float:
    """A run's best-epoch dev F1; a diverged run (NaN/inf loss) failed and scores 0."""
    return 0.0 if row["diverged"] else row["best_dev_f1"]


def good_band(curve: dict, band: float, failed: set) -> list:
    """The unbroken run of rates around the best one whose F1 is within ``band`` of it (none failed).

    >>> good_band({0.1: 0.5, 0.3: 0.9, 1.0: 0.89, 3.0: 0.95, 10.0: 0.0}, 0.05, {10.0})  # 0.3 is cut off by 1.0
    [3.0]
    >>> good_band({0.1: 0.85, 0.3: 0.9, 1.0: 0.89, 3.0: 0.95}, 0.1, set())
    [0.1, 0.3, 1.0, 3.0]
    """
    grid = sorted(curve)
    best = max(grid, key=curve.get)
    ok = [lr not in failed and curve[lr] >= curve[best] - band for lr in grid]
    i = j = grid.index(best)
    while i > 0 and ok[i - 1]:
        i -= 1
    while j < len(grid) - 1 and ok[j + 1]:
        j += 1
    return grid[i : j + 1]


def tuning(rows: list, config: e08.Config) -> dict:
    """Per optimizer: the mean F1 of each rate over the tuning seeds, the failed rates (diverged or
    collapsed), the tuned rate, its good band and that band's width per tuning seed."""
    out = {}
    for opt in config.optimizers:
        mine = [r for r in rows if r["optimizer"] == opt]
        per_seed = {s: {r["learning_rate"]: f1_of(r) for r in mine if r["seed"] == s} for s in config.tune_seeds}
        grid = sorted({r["learning_rate"] for r in mine})
        curve = {lr: float(np.mean([per_seed[s][lr] for s in config.tune_seeds])) for lr in grid}
        best = max(grid, key=curve.get)
        diverged = sorted({r["learning_rate"] for r in mine if r["diverged"]})
        collapsed = [lr for lr in grid if lr not in diverged and curve[lr] < config.collapse_fraction * curve[best]]
        failed = set(diverged) | set(collapsed)
        band = good_band(curve, config.band, failed)
        widths = []  # each tuning seed's own band, failures judged on its own curve
        for s in config.tune_seeds:
            seed_curve = per_seed[s]
            seed_best = max(seed_curve.values())
            seed_failed = {lr for lr in grid if seed_curve[lr] < config.collapse_fraction * seed_best} | set(diverged)
            widths.append(len(good_band(seed_curve, config.band, seed_failed)) / config.per_decade)
        out[opt] = {
            "f1_by_rate": {f"{lr:g}": curve[lr] for lr in grid},
            "tuned_rate": best,
            "tuned_f1": curve[best],
            "best_interior": grid[0] < best < grid[-1],
            "good_rates": band,
            "width_decades": len(band) / config.per_decade,
            "width_by_seed": widths,
            "diverged_rates": diverged,
            "collapsed_rates": collapsed,  # finite loss, F1 below the fraction: too small a rate to learn, or too large
            "collapsed_above_tuned": [lr for lr in collapsed if lr > best],  # a large rate's collapse
            "failed": len(failed),
            "default_rate": dict(config.default_rates)[opt],
        }
    return out


def confirmation(rows: list, tuned: dict, config: e08.Config) -> dict:
    """Per optimizer: F1 at the tuned and the default rate over the fresh seeds, and their paired difference."""
    out = {}
    for opt, t in tuned.items():
        at = {}
        for which, rate in (("tuned", t["tuned_rate"]), ("default", t["default_rate"])):
            mine = {r["seed"]: r for r in rows if r["optimizer"] == opt and r["learning_rate"] == rate}
            at[which] = [f1_of(mine[s]) for s in config.seeds]
        gain = stats.paired(at["tuned"], at["default"])
        out[opt] = {
            "tuned_f1": at["tuned"],
            "default_f1": at["default"],
            "tuned": stats.interval(at["tuned"]),
            "default": stats.interval(at["default"]),
            "tuning_gain": {**gain, "side": stats.side(gain, config.band)},
            "default_diverged": sum(
                r["diverged"] for r in rows if r["optimizer"] == opt and r["learning_rate"] == t["default_rate"]
            ),
        }
    return out


def usually(parts: list) -> bool | None:
    """ "Usually" over several optimizers: True if most held, False if at least half failed, else None.

    >>> usually([True, True, None]), usually([True, False]), usually([True, None, None])
    (True, False, None)
    """
    n = len(parts)
    if sum(p is True for p in parts) > n / 2:
        return True
    return False if sum(p is False for p in parts) >= n / 2 else None


def compare(tuned: dict, confirmed: dict, config: e08.Config) -> list:
    """Every paired comparison the claim reads, each against its bar fixed in the config: the ``primary``
    ones (one per part of the claim) by their own interval, the others Holm-corrected (``common.corrected``)."""
    adaptive = [o for o in ADAPTIVE if o in tuned]
    band, cell = config.band, 1 / config.per_decade
    reference = "adam" if "adam" in tuned else adaptive[0]
    rows = [  # 1. SGD works: at its tuned rate no more than `band` below the reference adaptive optimizer's
        ("sgd-reference:tuned_f1", stats.paired(confirmed["sgd"]["tuned_f1"], confirmed[reference]["tuned_f1"]), -band)
    ]
    # 2. SGD needs tuning: its default rate more than `band` worse than its tuned rate (and the others alike)
    rows += [(f"{o}:tuned-default", stats.paired(c["tuned_f1"], c["default_f1"]), band) for o, c in confirmed.items()]
    # 3. adaptive out of the box: the default rate no more than `band` below the tuned rate, for most of them
    rows += [
        (f"out_of_the_box:{o}", stats.paired(confirmed[o]["default_f1"], confirmed[o]["tuned_f1"]), -band)
        for o in adaptive
    ]
    # 4. robust across rates: the adaptive optimizers' mean good band wider than SGD's by more than a grid cell,
    #    tuning seed by tuning seed (a failed rate is never good)
    mean_width = np.mean([tuned[o]["width_by_seed"] for o in adaptive], axis=0)
    rows.append(("band_width:adaptive-sgd", stats.paired(list(mean_width), tuned["sgd"]["width_by_seed"]), cell))
    named = [{"name": n, "bar": bar, **d, "side": stats.side(d, bar)} for n, d, bar in rows]
    return corrected(named, config.primary)


def judge(tuned: dict, confirmed: dict, comparisons: list, config: e08.Config) -> dict:
    """The four parts of the claim from ``comparisons`` (:func:`compare`: sides after the correction)."""
    adaptive = [o for o in ADAPTIVE if o in tuned]
    by = {c["name"]: c for c in comparisons}
    held = lambda c: SIDE_HOLDS[c["side"]]  # noqa: E731
    box = {o: by[f"out_of_the_box:{o}"] for o in adaptive}
    box_parts = {o: held(d) for o, d in box.items()}
    sds = {o: c["tuned"]["sd"] for o, c in confirmed.items()}
    return {
        "reference": "adam" if "adam" in tuned else adaptive[0],
        "sgd_vs_reference": by["sgd-reference:tuned_f1"],
        "sgd_works": held(by["sgd-reference:tuned_f1"]),
        "sgd_needs_tuning": held(by["sgd:tuned-default"]),
        "out_of_the_box": box,
        "out_of_the_box_parts": box_parts,
        "adaptive_out_of_the_box": usually(list(box_parts.values())),
        "adaptive_good_at_default": sum(p is True for p in box_parts.values()),
        "adaptive_count": len(adaptive),
        "width_difference": by["band_width:adaptive-sgd"],
        "adaptive_wider": held(by["band_width:adaptive-sgd"]),
        "adaptive_mean_width_decades": float(np.mean([tuned[o]["width_decades"] for o in adaptive])),
        "sgd_width_decades": tuned["sgd"]["width_decades"],
        "failed_rates": {o: t["failed"] for o, t in tuned.items()},
        "collapsed_above_tuned": {o: len(t["collapsed_above_tuned"]) for o, t in tuned.items()},
        "best_interior": all(t["best_interior"] for t in tuned.values()),
        # the noise the band was set from, measured again on the fresh seeds at the tuned rates
        "seed_sd_at_tuned": sds,
        "band_over_max_sd": config.band / max(v or 0.0 for v in sds.values()) if any(sds.values()) else None,
        "band_over_min_sd": config.band / min(v for v in sds.values() if v) if any(sds.values()) else None,
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e08, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    corpus = corpus._replace(dev=corpus.dev[: config.dev_sentences])
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    log = (lambda *_: None) if args.quick else print
    grid = [
        {"optimizer": o, "learning_rate": lr, "seed": s}
        for o in config.optimizers
        for lr in config.learning_rates
        for s in config.tune_seeds
    ]
    rows = sweep.run_sweep(grid, prepared, args.out / "sweep", base=config.training, log=log, overwrite=True)
    tuned = tuning(rows, config)
    rates = {o: sorted({t["tuned_rate"], t["default_rate"]}) for o, t in tuned.items()}
    table = [{"optimizer": o, "learning_rate": lr, "seed": s} for o in rates for lr in rates[o] for s in config.seeds]
    confirm_rows = sweep.run_sweep(table, prepared, args.out / "confirm", base=config.training, log=log, overwrite=True)
    confirmed = confirmation(confirm_rows, tuned, config)
    comparisons = compare(tuned, confirmed, config)
    for o, c in confirmed.items():  # the tuning gain as judged: Holm-corrected where it is secondary
        c["tuning_gain"] = next(x for x in comparisons if x["name"] == f"{o}:tuned-default")
    j = judge(tuned, confirmed, comparisons, config)
    keep = ("optimizer", "learning_rate", "seed", "best_dev_f1", "best_epoch", "final_train_loss", "diverged")
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(tuning_runs=[{k: r[k] for k in keep} for r in rows])
    result.update(confirm_runs=[{k: r[k] for k in keep} for r in confirm_rows])
    result.update(tuning=tuned, confirmation=confirmed, judgement=j, seeds=list(config.seeds))
    result["comparisons"] = comparisons
    result["verdict"] = verdict_of(
        [j["sgd_works"], j["sgd_needs_tuning"], j["adaptive_out_of_the_box"], j["adaptive_wider"]]
    )
    result["sweep_runs"] = len(rows) + len(confirm_rows)
    # one (group, seconds) pair per stacked program: a group split into chunks has several
    result["sweep_seconds"] = sum(
        sum(sec for _, sec in {(r["group"], r["group_seconds"]) for r in x}) for x in (rows, confirm_rows)
    )
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
