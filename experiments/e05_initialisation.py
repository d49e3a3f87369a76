"""E05: zero initialisation -- identical hidden units or a dead network; normal / Xavier break the symmetry.

Settings, command and expected result: configs/e05.py; the prose: templates/e05.md.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats
from common import corrected, load_corpus, parse_args, prepare, result_head, train_table, verdict_of, write_result
from configs import base, e05
from figures import e05 as figure

from jaxbackprop import backprop, evaluate, model, pipeline, probes, train
from jaxbackprop import step as train_step

NAME = "e05_initialisation"
CLAIM = (
    "zero init keeps the hidden units identical (or the network dead); "
    "normal / Xavier break the symmetry, and Xavier trains better than small normal weights"
)
PART_WORDS = {True: "supported", False: "not supported", None: "not resolved"}
EARLY_STEPS = (0, 1, 2, 5, 10)  # traced besides every ``trace_every`` steps


def arms(config: e05.Config) -> list:
    """``(name, changes of training)`` of every arm each activation trains."""
    out = [(init, {"init": init}) for init in config.inits]
    return out + ([("zeros_dropout", {"init": "zeros", "dropout": config.dropout})] if config.dropout else [])


def nonzero(tree) -> list:
    """The names of the tensors of ``tree`` with any entry that is not exactly 0."""
    return sorted(k for k, v in tree.items() if np.any(np.asarray(v) != 0))


def moved(start, end) -> list:
    """The names of the parameters that changed at all (bit for bit) from ``start`` to ``end``."""
    return sorted(k for k in start if not np.array_equal(np.asarray(start[k]), np.asarray(end[k])))


_grads = jax.jit(lambda p, b, cfg: backprop.manual_value_and_grad(p, b, cfg)[1], static_argnums=2)


def measured(config: e05.Config, prepared) -> list:
    """Every activation x arm x seed: F1, and the units' symmetry at the start and the end."""
    table = [(a, name, changes, s) for a in config.activations for name, changes in arms(config) for s in config.seeds]
    configs = [train.configure(config.training, activation=a, seed=s, **changes) for a, _, changes, s in table]
    runs = []
    for (a, name, _, s), training, t in zip(table, configs, train_table(configs, prepared)):
        model_cfg = pipeline.model_config(training, prepared)
        # the very params the run started from (as sweep_group.init_group makes them)
        E = pipeline.initial_embeddings(prepared, s)
        start = model.init_params(jax.random.key(s), model_cfg, init=training.init, embeddings=E)
        batch = probes.first_windows(prepared.train, config.probe_windows, model_cfg)
        dev = probes.first_windows(prepared.dev, config.activation_windows, model_cfg)["windows"]
        ok = t["diverged"] is None and bool(t["curve"])
        row = {"activation": a, "arm": name, "seed": s, "init": training.init}
        row |= {"hidden_dim": training.model.hidden_dim, "dropout": training.model.dropout, "diverged": not ok}
        row |= {
            "dev_f1": [e["dev_f1"] for e in t["curve"]],
            "final_dev_f1": t["curve"][-1]["dev_f1"] if ok else 0.0,
            "mean_dev_f1": float(np.mean([e["dev_f1"] for e in t["curve"]])) if ok else 0.0,
            "test_f1": evaluate.evaluate(t["params"], prepared.test, prepared.tags, model_cfg, training.decode)["f1"]
            if ok
            else 0.0,
            "start": probes.symmetry_probe(start, batch, dev, model_cfg),
            "end": probes.symmetry_probe(t["params"], batch, dev, model_cfg) if ok else None,
            "moved": moved(start, t["params"]),
            "nonzero_grads_at_start": nonzero(_grads(start, batch, model_cfg)) if training.init == "zeros" else None,
        }
        runs.append(row)
        print(
            f"{NAME}: {a:<8} {name:<14} seed {s}: test F1 {row['test_f1']:.4f}, distinct units "
            f"{row['start']['distinct_units']} -> {row['end'] and row['end']['distinct_units']}, moved {row['moved']}"
        )
    return runs


def traced(config: e05.Config, prepared, activation: str, dtype) -> list:
    """The zero start of every seed trained step by step (``train.run_epoch``: the order and keys of the
    compiled epoch) in ``dtype``, the units' symmetry measured every ``trace_every`` steps against
    sqrt(eps) of ``dtype``. Call it for float64 inside ``jax.enable_x64``."""
    training = train.configure(config.training, activation=activation, init="zeros")
    model_cfg = pipeline.model_config(training, prepared)

    # W, U and b start at zero whatever the seed; E's rows without a vector are the seed's (one step function)
    def start_of(seed):
        E = pipeline.initial_embeddings(prepared, seed)
        return model.init_params(jax.random.key(seed), model_cfg, init="zeros", embeddings=E, dtype=dtype)

    steps = pipeline.steps_per_epoch(pipeline.training_rows(prepared.train, model_cfg), training.batch_size)
    opt_start, step = train_step.make_step(training, model_cfg, start_of(config.seeds[0]), steps)
    batch = probes.first_windows(prepared.train, config.probe_windows, model_cfg)
    dev = probes.first_windows(prepared.dev, config.activation_windows, model_cfg)["windows"]
    rtol, last = math.sqrt(float(jnp.finfo(dtype).eps)), training.epochs * steps
    out = []
    for seed in config.seeds:
        params, opt_state, trace = start_of(seed), opt_start, []
        seeded = train.configure(training, seed=seed)  # the seed sets the data order and E's random rows

        def watch(t, p, trace=trace):
            if t in EARLY_STEPS or t % config.trace_every == 0 or t == last:
                trace.append({"step": t, **probes.symmetry_probe(p, batch, dev, model_cfg, rtol=rtol)})

        for epoch in range(1, training.epochs + 1):
            on_step = lambda i, p, epoch=epoch: watch((epoch - 1) * steps + i, p)  # noqa: E731
            params, opt_state, _ = train.run_epoch(
                step, params, opt_state, prepared.train, seeded, epoch, on_step=on_step
            )
        watch(last, params)
        assert params["W"].dtype == dtype, f"trained in {params['W'].dtype}, not {dtype}"
        name = jnp.dtype(dtype).name
        out.append({"activation": activation, "seed": seed, "dtype": name, "rtol": rtol, "trace": trace})
        out[-1] |= drift(trace, rtol)
    return out


def drift(trace: list, rtol: float) -> dict:
    """How far apart the units of a zero start get: the largest relative difference, whether every
    measurement is within ``rtol``, the first step with any difference, and the growth per 100 steps (a
    least-squares fit of log10 difference against step) with the step it would reach ``rtol`` at
    (extrapolated; None if it does not grow).

    >>> d = drift([{"step": s, "max_unit_difference_rel": 1e-16 * 10 ** (s / 100), "distinct_units": 1}
    ...            for s in (100, 200, 300)], 1e-8)
    >>> round(d["growth_per_100_steps"], 6), round(d["steps_to_tolerance"]), d["within_tolerance"]
    (10.0, 800, True)
    """
    rel = [p["max_unit_difference_rel"] for p in trace]
    out = {"max_rel": max(rel), "end_rel": rel[-1], "last_step": trace[-1]["step"], "bit_identical": max(rel) == 0}
    out["within_tolerance"] = max(rel) <= rtol and all(p["distinct_units"] == 1 for p in trace)
    out["first_nonzero_step"] = next((p["step"] for p in trace if p["max_unit_difference_rel"] > 0), None)
    growing = [p for p in trace if p["max_unit_difference_rel"] > 0]
    out["growth_per_100_steps"] = out["steps_to_tolerance"] = None
    if len(growing) > 2:
        steps, logs = [p["step"] for p in growing], np.log10([p["max_unit_difference_rel"] for p in growing])
        slope, intercept = np.polyfit(steps, logs, 1)
        out["growth_per_100_steps"] = float(10 ** (100 * slope))
        out["steps_to_tolerance"] = float((math.log10(rtol) - intercept) / slope) if slope > 0 else None
    return out


def symmetry_traces(config: e05.Config, prepared) -> list:
    """Each traced activation's zero start, every seed, in float32 and in float64 (the same start and steps)."""
    out = []
    for a in (a for a in config.traced if a in config.activations):
        out += traced(config, prepared, a, jnp.float32)
        with jax.enable_x64(True):
            out += traced(config, prepared, a, jnp.float64)
        for t in out[-2 * len(config.seeds) :]:
            print(f"{NAME}: {a} zeros seed {t['seed']}, {t['dtype']}: units differ by {t['max_rel']:.3g} at most")
    return out


def values(runs: list, activation: str, arm: str, key: str, seeds) -> list:
    by_seed = {r["seed"]: r for r in runs if r["activation"] == activation and r["arm"] == arm}
    return [by_seed[s][key] for s in seeds]


# (name, A, B, bar field, side that supports the claim): test F1 of A - B, paired by seed
COMPARISONS = (("xavier-normal", "xavier", "normal", "xavier_bar", "above"),)


def compare(runs: list, config: e05.Config) -> list:
    names = {r["arm"] for r in runs}
    out = []
    for a in config.activations:
        for name, x, y, bar, claimed in COMPARISONS:
            if {x, y} <= names:
                bar = getattr(config, bar)
                d = stats.paired(
                    values(runs, a, x, "test_f1", config.seeds), values(runs, a, y, "test_f1", config.seeds)
                )
                side = stats.side(d, bar)
                out.append({"activation": a, "name": f"{name}:{a}", "kind": name, "a": x, "b": y, "bar": bar})
                out[-1] |= {"claimed": claimed, **d, "side": side}
    out = corrected(out, config.primary)  # the primary one by its interval, the others Holm-corrected
    return [c | {"held": None if c["side"] == "across" else c["side"] == c["claimed"]} for c in out]


def aggregate(runs: list, config: e05.Config) -> list:
    """Per activation and arm, the interval over seeds of the F1s and the units' symmetry at the end."""
    out = []
    for a in config.activations:
        for name, _ in arms(config):
            mine = [r for r in runs if r["activation"] == a and r["arm"] == name]
            row = {"activation": a, "arm": name, "hidden_dim": mine[0]["hidden_dim"], "dropout": mine[0]["dropout"]}
            for k in ("test_f1", "final_dev_f1", "mean_dev_f1"):
                row[k] = stats.interval([r[k] for r in mine])
            ends = [r["end"] for r in mine if r["end"] is not None]
            row["end_distinct_units"] = sorted({e["distinct_units"] for e in ends})
            row["end_max_rel"] = max((e["max_unit_difference_rel"] for e in ends), default=None)
            row["moved"] = sorted({k for r in mine for k in r["moved"]})
            row["nonzero_grads_at_start"] = sorted({k for r in mine for k in r["nonzero_grads_at_start"] or []})
            row["diverged"] = sum(r["diverged"] for r in mine)
            out.append(row)
    return out


def judge(runs: list, traces: list, comparisons: list, config: e05.Config) -> dict:
    """Each part of the claim per activation: True, False or None (an interval across its bar)."""
    H, parts = config.training.model.hidden_dim, {}
    for a in config.activations:
        zeros = [r for r in runs if r["activation"] == a and r["arm"] == "zeros"]
        dead = all(r["moved"] == ["c"] and r["nonzero_grads_at_start"] == ["c"] for r in zeros)
        mine = [t for t in traces if t["activation"] == a]
        f64 = [t for t in mine if t["dtype"] == "float64"]
        if f64:  # the units move: identical to float64's precision at every measurement, every seed
            symmetric = all(t["within_tolerance"] for t in f64)
        else:  # measured at the end of the float32 runs (a dead network: exactly equal, all zero)
            symmetric = all(r["end"] is not None and r["end"]["distinct_units"] == 1 for r in zeros)
        random = [r for r in runs if r["activation"] == a and r["arm"] in ("normal", "xavier")]
        by = {c["kind"]: c for c in comparisons if c["activation"] == a}
        parts[a] = {
            "zeros_stay_symmetric": symmetric,
            "random_inits_break_symmetry": all(
                r["start"]["distinct_units"] == H and r["end"] is not None and r["end"]["distinct_units"] == H
                for r in random
            ),
            # reported, not judged: what the zero start is
            "zeros_dead": dead,
            "zeros_moved": sorted({k for r in zeros for k in r["moved"]}),
            "zeros_nonzero_grads_at_start": sorted({k for r in zeros for k in r["nonzero_grads_at_start"]}),
        }
        if "xavier-normal" in by:  # both arms ran
            parts[a]["xavier_beats_normal"] = by["xavier-normal"]["held"]
        for dtype in ("float32", "float64"):
            d = [t for t in mine if t["dtype"] == dtype]
            if d:
                parts[a][dtype] = {
                    "rtol": d[0]["rtol"],
                    "max_rel": max(t["max_rel"] for t in d),
                    "within_tolerance": all(t["within_tolerance"] for t in d),
                    "bit_identical_seeds": sum(t["bit_identical"] for t in d),
                    "growth_per_100_steps": [t["growth_per_100_steps"] for t in d],
                    "steps_to_tolerance": [t["steps_to_tolerance"] for t in d],
                    "growing_seeds": sum(t["growth_per_100_steps"] is not None for t in d),
                    "last_step": d[0]["last_step"],
                }
        drop = [r for r in runs if r["activation"] == a and r["arm"] == "zeros_dropout" and r["end"] is not None]
        if drop:
            parts[a]["dropout_distinct_units"] = sorted({r["end"]["distinct_units"] for r in drop})
            parts[a]["dropout_breaks_symmetry"] = all(r["end"]["distinct_units"] > 1 for r in drop)
        parts[a]["verdicts"] = {k: PART_WORDS[parts[a][k]] for k in JUDGED if k in parts[a]}
    return parts


JUDGED = ("zeros_stay_symmetric", "random_inits_break_symmetry", "xavier_beats_normal")


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e05, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    runs = measured(config, prepared)
    traces = symmetry_traces(config, prepared)
    comparisons = compare(runs, config)
    parts = judge(runs, traces, comparisons, config)
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(runs=runs, traces=traces, aggregate=aggregate(runs, config), comparisons=comparisons, parts=parts)
    result["verdict"] = verdict_of([p[k] for p in parts.values() for k in JUDGED if k in p])
    result["seeds"], result["n_seeds"] = list(config.seeds), len(config.seeds)
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
