"""E04: the choice of nonlinearity f -- first-layer gradient, speed, F1, dead and saturated units, at tuned rates.

Settings, command and expected result: configs/e04.py; the prose: templates/e04.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats
from common import corrected, load_corpus, parse_args, prepare, result_head, train_table, verdict_of, write_result
from configs import base, e04
from figures import e04 as figure
from numerics import time_round_robin

from jaxbackprop import evaluate, model, nonlinearities, pipeline, probes, train
from jaxbackprop import step as train_step

NAME = "e04_nonlinearities"
CLAIM = (
    "sigmoid starves the first layer of gradient and learns slowest; ReLU-family units train faster than "
    "tanh-family ones; (hard)tanh is fine; leaky ReLU / PReLU never die"
)
RELU_FAMILY, TANH_FAMILY = ("relu", "leaky_relu", "prelu"), ("tanh", "hardtanh")
OTHERS = tuple(a for a in nonlinearities.ACTIVATIONS if a != "sigmoid")
PART_WORDS = {True: "supported", False: "not supported", None: "not resolved"}
SIDE_HOLDS = {"above": True, "below": False, "across": None}  # A - B against its bar -> the part held?


def failure(curve: list, diverged, collapse: float) -> str | None:
    """Why a run failed, or None: ``"diverged"`` (a non-finite loss), ``"all-O"`` (final dev F1 0, the
    tagger that predicts no entity), ``"collapsed"`` (final dev F1 below ``collapse`` x its best epoch's).

    >>> failure([{"dev_f1": 0.8}, {"dev_f1": 0.3}], None, 0.5), failure([{"dev_f1": 0.0}], None, 0.5)
    ('collapsed', 'all-O')
    >>> failure([{"dev_f1": 0.8}, {"dev_f1": 0.7}], None, 0.5), failure([{"dev_f1": 0.8}], 2, 0.5)
    (None, 'diverged')
    """
    if diverged is not None or not curve:
        return "diverged"
    final, best = curve[-1]["dev_f1"], max(e["dev_f1"] for e in curve)
    if final == 0:
        return "all-O"
    return "collapsed" if final < collapse * best else None


def tune(config: e04.Config, prepared) -> tuple[list, dict]:
    """Every activation at every rate of the grid with the tuning seeds; per activation the rate with the
    highest mean final dev F1 over the tuning seeds among the rates where none failed."""
    table = [(a, r, s) for a in config.activations for r in config.rates for s in config.tune_seeds]
    configs = [train.configure(config.training, activation=a, learning_rate=r, seed=s) for a, r, s in table]
    rows = []
    for (a, r, s), t in zip(table, train_table(configs, prepared)):
        why = failure(t["curve"], t["diverged"], config.collapse)
        final = t["curve"][-1]["dev_f1"] if t["curve"] and t["diverged"] is None else 0.0
        rows.append({"activation": a, "learning_rate": r, "seed": s, "final_dev_f1": final, "failure": why})
        rows[-1]["dev_f1"] = [e["dev_f1"] for e in t["curve"]]
    tuned = {}
    for a in config.activations:
        scores = {}
        for i, r in enumerate(config.rates):
            mine = [x for x in rows if x["activation"] == a and x["learning_rate"] == r]
            if not any(x["failure"] for x in mine):
                scores[i] = float(np.mean([x["final_dev_f1"] for x in mine]))
        if not scores:
            raise SystemExit(f"{NAME}: {a} failed at every rate of {config.rates}; widen the grid")
        i = max(scores, key=scores.get)
        tuned[a] = {"learning_rate": config.rates[i], "dev_f1": scores[i], "interior": 0 < i < len(config.rates) - 1}
        tuned[a]["failed_rates"] = [r for j, r in enumerate(config.rates) if j not in scores]
        print(
            f"{NAME}: {a:<10} tuned rate {config.rates[i]:g} (dev F1 {scores[i]:.4f}, interior {tuned[a]['interior']})"
        )
    return rows, tuned


def probe(params, batch, windows, model_cfg) -> dict:
    """``probes.first_layer_probe`` (gradients on ``batch``, dead / saturated units on ``windows``), and
    ``flat_pairs``: the share of (window, unit) pairs whose |f'(z)| is at most ``probes.FLAT_SLOPE``."""
    flat = probes.flat_fraction(probes.local_gradients(params, windows, model_cfg))
    return probes.first_layer_probe(params, batch, windows, model_cfg) | {"flat_pairs": flat}


def measured(config: e04.Config, prepared, tuned: dict) -> list:
    """Every activation at its tuned rate, one run per seed: F1, speed, and the probes at init and trained."""
    table = [(a, s) for a in config.activations for s in config.seeds]
    configs = [
        train.configure(config.training, activation=a, learning_rate=tuned[a]["learning_rate"], seed=s)
        for a, s in table
    ]
    runs = []
    for ((a, s), training), t in zip(zip(table, configs), train_table(configs, prepared)):
        model_cfg = pipeline.model_config(training, prepared)
        # the very params the run started from (as sweep_group.init_group makes them)
        E = pipeline.initial_embeddings(prepared, s)
        init = model.init_params(jax.random.key(s), model_cfg, init=training.init, embeddings=E)
        batch = probes.first_windows(prepared.train, config.probe_windows, model_cfg)
        dev = probes.first_windows(prepared.dev, config.dead_windows, model_cfg)["windows"]
        why, curve = failure(t["curve"], t["diverged"], config.collapse), t["curve"]
        ok = t["diverged"] is None and bool(curve)
        row = {"activation": a, "seed": s, "learning_rate": training.learning_rate, "failure": why}
        row |= {
            "final_dev_f1": curve[-1]["dev_f1"] if ok else 0.0,
            "mean_dev_f1": float(np.mean([e["dev_f1"] for e in curve])) if ok else 0.0,  # higher: learnt sooner
            "test_f1": evaluate.evaluate(t["params"], prepared.test, prepared.tags, model_cfg, training.decode)["f1"]
            if ok
            else 0.0,
            "final_train_loss": curve[-1]["train_loss"] if ok else None,
            "dev_f1": [e["dev_f1"] for e in curve],
            "at_init": probe(init, batch, dev, model_cfg),
            "trained": probe(t["params"], batch, dev, model_cfg) if ok else None,
        }
        runs.append(row)
        print(
            f"{NAME}: {a:<10} seed {s}: test F1 {row['test_f1']:.4f}, mean dev F1 over epochs {row['mean_dev_f1']:.4f}"
            f", ||dJ/dW|| at init {row['at_init']['grad_W']:.3g}" + (f" ({why})" if why else "")
        )
    return runs


def step_times(config: e04.Config, prepared) -> dict:
    """Per activation, the time of one training step (the compiled step of ``train``: forward, manual
    backprop and the SGD update) on the same batch, round-robin over the activations so that load lands
    on all alike -- the lecture's reason for hard tanh and ReLU (exp and tanh cost more than a max).
    Medians and quartiles over ``step_time_repeats`` repeats, in µs, and each over ReLU's, round by round."""
    fns = {}
    for a in config.activations:
        training = train.configure(config.training, activation=a)
        model_cfg = pipeline.model_config(training, prepared)
        params = model.init_params(jax.random.key(0), model_cfg, init=training.init, embeddings=prepared.embeddings)
        opt_state, step = train_step.make_step(training, model_cfg, params, 1)
        batch = next(iter(pipeline.padded_batches(prepared.train, training.batch_size)))
        state = {"params": params, "opt_state": opt_state, "key": jax.random.key(0)}
        fns[a] = lambda state=state, step=step, batch=batch: one_step(state, step, batch)
    t = time_round_robin(fns, repeats=config.step_time_repeats, min_time=config.step_time_min_s)
    base_ = "relu" if "relu" in t else next(iter(t))
    out = {}
    for a, v in t.items():
        ratio = np.asarray(v["times_s"]) / np.asarray(t[base_]["times_s"])
        out[a] = {"median_us": 1e6 * v["median_s"], "q1_us": 1e6 * v["q1_s"], "q3_us": 1e6 * v["q3_s"]}
        out[a] |= {f"over_{base_}": float(np.median(ratio)), "calls_per_repeat": v["calls_per_repeat"]}
    return out


def one_step(state: dict, step, batch) -> None:
    """One training step from ``state`` (which it advances: the step may donate its inputs), blocking."""
    params, opt_state, loss = step(state["params"], state["opt_state"], batch, state["key"])
    state.update(params=params, opt_state=opt_state)
    jax.block_until_ready(loss)


def values(runs: list, activation: str, metric: str, seeds) -> list:
    """One number per seed (in ``seeds`` order): ``metric`` of the run, a dotted path into it (``at_init.grad_W``)."""
    by_seed = {r["seed"]: r for r in runs if r["activation"] == activation}
    out = []
    for s in seeds:
        v = by_seed[s]
        for part in metric.split("."):
            v = None if v is None else v[part]
        out.append(v)
    return out


def arm(runs: list, x, metric: str, config: e04.Config) -> list:
    """One number per seed for an arm: an activation's ``metric``, or a family's (a tuple) mean of it."""
    if isinstance(x, str):
        return values(runs, x, metric, config.seeds)
    mine = [a for a in x if a in config.activations]
    return [float(v) for v in np.mean([values(runs, a, metric, config.seeds) for a in mine], axis=0)]


# (name, metric, A, B, bar): A - B paired by seed; an arm is an activation or a family of them
COMPARISONS = (
    *((f"grad_W:{a}-sigmoid", "at_init.grad_W", a, "sigmoid", 0.0) for a in OTHERS),
    *((f"speed:{a}-sigmoid", "mean_dev_f1", a, "sigmoid", 0.0) for a in OTHERS),
    ("speed:relu_family-tanh_family", "mean_dev_f1", RELU_FAMILY, TANH_FAMILY, 0.0),
    ("speed:relu-tanh", "mean_dev_f1", "relu", "tanh", 0.0),
    ("test_f1:relu-sigmoid", "test_f1", "relu", "sigmoid", 0.0),
    ("test_f1:tanh-relu", "test_f1", "tanh", "relu", "fine_bar"),
    ("test_f1:hardtanh-relu", "test_f1", "hardtanh", "relu", "fine_bar"),
)


def compare(runs: list, config: e04.Config) -> list:
    """Each comparison whose arms ran: the paired interval of A - B and where it lies against its bar (the
    primary ones by their own interval, the others Holm-corrected: ``common.corrected``)."""
    ran, out = set(config.activations), []
    for name, metric, a, b, bar in COMPARISONS:
        arms = [a, b]
        if not all(set(x if isinstance(x, tuple) else (x,)) & ran for x in arms):
            continue
        xs, ys = (arm(runs, x, metric, config) for x in arms)
        bar = getattr(config, bar) if isinstance(bar, str) else bar
        d = stats.paired(xs, ys)
        label = lambda x: x if isinstance(x, str) else "+".join(m for m in x if m in ran)  # noqa: E731
        out.append({"name": name, "metric": metric, "a": label(a), "b": label(b), "bar": bar, **d})
        out[-1]["side"] = stats.side(d, bar)
    return corrected(out, config.primary)


def all_held(sides: list) -> bool | None:
    """Several comparisons as one part: False if any lies below its bar, True if all lie above, else None."""
    held = [SIDE_HOLDS[s] for s in sides]
    return False if False in held else True if held and all(held) else None


def aggregate(runs: list, tuned: dict, config: e04.Config) -> dict:
    """Per activation, its tuned rate and the interval over seeds of every reported number."""
    keys = ("test_f1", "final_dev_f1", "mean_dev_f1", "at_init.grad_W", "at_init.mean_fprime", "at_init.flat_pairs")
    keys += ("trained.flat_pairs", "trained.saturated_fraction", "trained.dead_fraction", "trained.off_fraction")
    out = {}
    for a in config.activations:
        out[a] = dict(tuned[a])
        out[a] |= {k.replace(".", "_"): stats.interval(values(runs, a, k, config.seeds)) for k in keys}
        out[a]["failed"] = sum(r["failure"] is not None for r in runs if r["activation"] == a)
        if a == "prelu":
            out[a]["trained_prelu_alpha"] = stats.interval(values(runs, a, "trained.prelu_alpha", config.seeds))
    return out


def judge(runs: list, comparisons: list, config: e04.Config) -> dict:
    """Each part of the claim from the paired intervals (True / False / None: not resolved)."""
    by = {c["name"]: c for c in comparisons}
    sides = lambda prefix: [c["side"] for n, c in by.items() if n.startswith(prefix)]  # noqa: E731
    leaky = [a for a in ("leaky_relu", "prelu") if a in config.activations]
    dead = {a: values(runs, a, "trained.dead_fraction", config.seeds) for a in leaky}
    parts = {
        "sigmoid_smallest_first_layer_gradient": all_held(sides("grad_W:")),
        "sigmoid_slowest": all_held(
            [c["side"] for n, c in by.items() if n.startswith("speed:") and n.endswith("-sigmoid")]
        ),
        "relu_family_faster_than_tanh_family": all_held(sides("speed:relu_family-tanh_family")),
        "tanh_family_fine": all_held(sides("test_f1:tanh-relu") + sides("test_f1:hardtanh-relu")),
    }
    if dead:  # by construction: f' is the slope, not 0, for z <= 0
        parts["leaky_prelu_dead_free"] = all(v == 0 for vs in dead.values() for v in vs if v is not None)
    return parts


JUDGED = ("sigmoid_smallest_first_layer_gradient", "sigmoid_slowest", "relu_family_faster_than_tanh_family")
JUDGED += ("tanh_family_fine", "leaky_prelu_dead_free")


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e04, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    tuning, tuned = tune(config, prepared)
    runs = measured(config, prepared, tuned)
    comparisons = compare(runs, config)
    parts = judge(runs, comparisons, config)
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(tuning=tuning, tuned=tuned, runs=runs, aggregate=aggregate(runs, tuned, config))
    result.update(comparisons=comparisons, parts=parts, seeds=list(config.seeds))
    result["step_time"] = step_times(config, prepared) if config.step_time_repeats else None
    result["verdict"] = verdict_of([parts[k] for k in JUDGED if k in parts])
    result["per_activation"] = [{"activation": a, **result["aggregate"][a]} for a in config.activations]
    result["part_verdicts"] = {k: PART_WORDS[v] for k, v in parts.items()}
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
