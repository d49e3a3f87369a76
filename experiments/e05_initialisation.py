"""E05: zero initialisation leaves the hidden units symmetric; small random or Xavier weights break
the symmetry, and Xavier trains well.

Claim (the lecture's "parameter initialisation" slide): if every weight starts at 0, all hidden
units compute the same function of x, receive identical gradients and stay identical for ever, so
the network is no better than one with a single hidden unit; initialising W and U to small random
numbers (here N(0, 0.01^2)) or with Xavier / Glorot's U(-r, r), r = sqrt(6 / (fan_in + fan_out)),
breaks the symmetry, and Xavier trains well.

``init`` sets W and U (b and c start at 0; E holds the word vectors either way: see
``model.init_params``). Each variant trains from the same seed with the same data order and the
same optimizer (SGD with momentum 0.9, constant rate); along the way we measure the symmetry
directly: a hidden unit is its row of W, its bias b_i and its column of U, and two units are the
same when these agree to sqrt(eps32) ~ 3.5e-4 of their scale (float32 round-off makes
zero-initialised units differ in the last bits, see below). We count distinct units, the largest difference
between two units (max over pairs and coordinates), the rank of W, the spread of the hidden
activations h across units, and the spread of the gradient rows dJ/dW_i across units.
Dropout is 0 in the symmetry runs because dropout itself breaks symmetry (each unit gets its own
mask); a zeros + dropout variant shows whether it does.

    python experiments/e05_initialisation.py            # ~2 min on 2 busy CPU cores
    python experiments/e05_initialisation.py --quick    # ~15 s (sigmoid only)
    python experiments/e05_initialisation.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt          # ~8 min

Expected: zeros -> 1 distinct unit at every step, W of rank <= 1, dev F1 no better than a
one-unit network; with tanh (f(0) = 0) nothing but the output bias c ever moves. Normal and
Xavier -> H distinct units from step 0; Xavier learns fastest.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import corpus_fields, fmt, load_corpus, parse_args, prepare, roundoff_tolerance, section, write_results

from jaxbackprop import backprop, model, plots, train

NAME = "e05_initialisation"
INITS = ("zeros", "normal", "xavier")
# Two units are "the same" when they agree to this fraction of the largest |weight|. Not 0: in float32
# the zero-initialised units can pick up round-off differences (one ulp, ~eps32 relative, after a step;
# where the symmetric state is unstable they grow, ~3x per 100 steps measured), while a random start
# differs by O(1). sqrt(eps32) ~ 3.5e-4, the geometric mean of eps32 and 1, is equally far from both
# regimes (a factor 2^11.5 each way), on any machine's float32.
SAME_UNIT_RTOL = math.sqrt(float(np.finfo(np.float32).eps))


@dataclasses.dataclass(frozen=True)
class Config:
    train_sentences: int = 500  # a training subset: differences in speed show before everything reaches F1 0.98
    window: int = 5
    hidden_dim: int = 100
    activations: tuple = ("tanh", "sigmoid")  # tanh: f(0) = 0; sigmoid: f(0) = 1/2 (the symmetric units move)
    optimizer: str = "momentum"  # SGD with momentum 0.9: adaptive optimizers would rescale the tiny N(0, 0.01^2) start
    learning_rate: float = 0.05
    epochs: int = 6
    batch_size: int = 64
    dropout_demo: float = 0.3  # the zeros + dropout variant
    watch_steps: tuple = (0, 1, 2, 10, 100, 300)  # symmetry measured before these steps (and after each epoch)
    probe_windows: int = 512  # the fixed training batch for gradient rows
    activation_windows: int = 1024  # dev windows for the spread of h across units
    seed: int = 0


QUICK = Config(train_sentences=300, hidden_dim=16, activations=("sigmoid",), learning_rate=0.2, epochs=3, watch_steps=(0, 1, 2, 10),
               probe_windows=128, activation_windows=256)  # fmt: skip
CONLL = Config(train_sentences=0, hidden_dim=300, learning_rate=0.05, epochs=4, batch_size=256, watch_steps=(0, 1, 2, 10, 100, 1000))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One training run: an activation, an initialisation, a hidden size and a dropout rate."""

    activation: str
    init: str
    hidden_dim: int
    dropout: float

    @property
    def label(self) -> str:
        return f"{self.init}" + (f" + dropout {self.dropout:g}" if self.dropout else "") + (f" (H = {self.hidden_dim})" if self.hidden_dim == 1 else "")


def variants(cfg: Config, activation: str) -> list:
    """The three inits without dropout, zeros with dropout, and a one-unit network (Xavier)."""
    return [Variant(activation, i, cfg.hidden_dim, 0.0) for i in INITS] + [
        Variant(activation, "zeros", cfg.hidden_dim, cfg.dropout_demo), Variant(activation, "xavier", 1, 0.0)]  # fmt: skip


def train_config(cfg: Config, v: Variant) -> train.TrainConfig:
    """Every field pinned; only the variant's fields differ between runs."""
    return train.TrainConfig(
        window=cfg.window, hidden_dim=v.hidden_dim, activation=v.activation, init=v.init, l2=0.0, dropout=v.dropout,
        input_dropout=None, word_dropout=0.0, casing_dim=0, embed_dim=50, optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate, schedule="constant", decay_epochs=1, decay_rate=1.0, epochs=cfg.epochs,
        batch_size=cfg.batch_size, patience=0, seed=cfg.seed, grad="manual", impl="pure", embeddings_mode="finetune",
        sparse=False, min_count=1, decode="argmax",  # the recorded results were decoded per token
    )  # fmt: skip


# ----------------------------------------------------------------------------- measuring symmetry


def units_of(params) -> np.ndarray:
    """Each hidden unit's own parameters: [W_i, b_i, U_:i], (H, D + 1 + C)."""
    return np.concatenate([np.asarray(params["W"]), np.asarray(params["b"])[:, None], np.asarray(params["U"]).T], axis=1)


def count_distinct(rows: np.ndarray, rtol: float = SAME_UNIT_RTOL) -> int:
    """Rows that differ (max |difference|) by more than rtol * max |entry| from every row kept so far."""
    tol = rtol * max(float(np.max(np.abs(rows))), 1e-30)
    kept = []
    for r in rows:
        if not kept or np.min(np.max(np.abs(np.asarray(kept) - r), axis=1)) > tol:
            kept.append(r)
    return len(kept)


def row_spread(a: np.ndarray) -> float:
    """max over pairs (i, j) and columns k of |a_ik - a_jk|, without forming the pairs."""
    return float(np.max(a.max(axis=0) - a.min(axis=0)))


@functools.partial(jax.jit, static_argnames="mcfg")
def _probe_arrays(params, batch, dev_windows, mcfg):
    """dJ/dW on a fixed training batch and h on dev windows (no dropout)."""
    _, grads = backprop.manual_value_and_grad(params, batch, mcfg)
    return grads["W"], model.hidden(params, dev_windows, mcfg)


def symmetry(params, probe_batch, dev_windows, mcfg) -> dict:
    """How alike the hidden units are: counts, largest differences, rank, spreads of h and of dJ/dW_i."""
    dW, h = (np.asarray(a) for a in _probe_arrays(params, probe_batch, dev_windows, mcfg))
    units, W = units_of(params), np.asarray(params["W"])
    sv = np.linalg.svd(W.astype(np.float64), compute_uv=False)  # singular values, largest first
    return {
        "distinct_units": count_distinct(units), "max_unit_difference": row_spread(units),
        "max_unit_difference_rel": row_spread(units) / max(float(np.max(np.abs(units))), 1e-30),
        # rank of W at the same relative tolerance, and sigma_2 / sigma_1 (0: rank <= 1 exactly)
        "W_rank": int(np.sum(sv > SAME_UNIT_RTOL * sv[0])) if sv[0] > 0 else 0,
        "W_sv2_over_sv1": float(sv[1] / sv[0]) if len(sv) > 1 and sv[0] > 0 else 0.0,
        "W_norm": float(np.linalg.norm(W)), "U_norm": float(np.linalg.norm(np.asarray(params["U"]))),
        # spread of h across units: std over units, averaged over windows (0 = every unit says the same)
        "h_std_across_units": float(np.mean(np.std(h, axis=1))), "h_mean_abs": float(np.mean(np.abs(h))),
        "grad_W_row_spread": row_spread(dW), "grad_W_norm": float(np.linalg.norm(dW)),
        "distinct_grad_W_rows": count_distinct(dW) if np.any(dW) else 1,
    }  # fmt: skip


# ----------------------------------------------------------------------------- training


def run_variant(cfg: Config, prepared: train.Prepared, v: Variant, step_cache: dict) -> dict:
    """Train one variant as ``train.train_and_evaluate`` does (same data order and keys, dev-F1 model
    selection, test F1 at the best epoch), measuring symmetry before ``cfg.watch_steps`` and after
    every epoch. A diverged run (non-finite loss) stops and keeps the epochs before it."""
    t0 = time.perf_counter()
    tcfg = train_config(cfg, v)
    mcfg = train.model_config(tcfg, prepared)
    params = train.compiled_init_params(jax.random.key(tcfg.seed), mcfg, tcfg.init, prepared.embeddings)
    n = len(prepared.train.windows)
    steps_per_epoch = math.ceil(n / tcfg.batch_size)
    opt_state, step = train.make_step_for(tcfg, mcfg, params, steps_per_epoch)
    # the compiled step depends on the model and the optimizer, not on the initial values: reuse it
    step = step_cache.setdefault((dataclasses.replace(tcfg, init="xavier"), mcfg), step)
    probe_batch = {"windows": jnp.asarray(prepared.train.windows[: cfg.probe_windows]), "labels": jnp.asarray(prepared.train.labels[: cfg.probe_windows])}
    dev_windows = jnp.asarray(prepared.dev.windows[: cfg.activation_windows])
    watch = lambda p, s, epoch: {"step": s, "epoch": epoch, **symmetry(p, probe_batch, dev_windows, mcfg)}
    trace, history = [], []
    best, best_params, best_epoch, diverged = -1.0, params, None, False
    for epoch in range(1, tcfg.epochs + 1):

        def on_step(i, p, epoch=epoch):
            t = (epoch - 1) * steps_per_epoch + i  # the global step about to run
            if t in cfg.watch_steps:
                trace.append(watch(p, t, epoch - 1 + i / steps_per_epoch))

        params, opt_state, train_loss = train.run_epoch(step, params, opt_state, prepared.train, tcfg, mcfg, epoch, steps_per_epoch,
                                                        on_step=on_step)  # fmt: skip
        if not math.isfinite(train_loss):
            diverged = True
            break
        trace.append(watch(params, epoch * steps_per_epoch, float(epoch)))
        dev = train.evaluate(params, prepared.dev, prepared.tags, mcfg, "argmax")
        history.append({"epoch": epoch, "train_loss": train_loss, "dev_loss": dev["loss"], "dev_f1": dev["f1"], "dev_accuracy": dev["accuracy"]})
        if dev["f1"] > best:  # the dense step does not donate its inputs: keeping a reference is safe
            best, best_params, best_epoch = dev["f1"], params, epoch
    test_f1 = train.evaluate(best_params, prepared.test, prepared.tags, mcfg, "argmax")["f1"] if history else None
    f1s = [r["dev_f1"] for r in history]
    end = trace[-1]
    print(f"{NAME}: {v.activation:<8} {v.label:<22} dev F1 {max(f1s, default=0):.3f}, distinct units {end['distinct_units']}/{v.hidden_dim}, "
          f"max unit difference {end['max_unit_difference']:.3g}, W rank {end['W_rank']}; {time.perf_counter() - t0:.0f}s", flush=True)  # fmt: skip
    return {
        **dataclasses.asdict(v), "label": v.label, "diverged": diverged, "history": history, "trace": trace,
        "best_dev_f1": max(best, 0.0), "best_epoch": best_epoch, "test_f1": test_f1,
        "final_dev_f1": f1s[-1] if f1s else 0.0, "mean_dev_f1_over_epochs": float(np.mean(f1s)) if f1s else 0.0,
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "end": end, "seconds": time.perf_counter() - t0,
    }  # fmt: skip


# ----------------------------------------------------------------------------- plots


STYLE = {"zeros": ("tab:red", "-"), "normal": ("tab:orange", "-"), "xavier": ("tab:blue", "-"),
         "zeros + dropout": ("tab:red", ":"), "one unit": ("0.4", "--")}  # fmt: skip


def _style(run) -> tuple:
    if run["hidden_dim"] == 1:
        return STYLE["one unit"]
    return STYLE["zeros + dropout"] if run["dropout"] else STYLE[run["init"]]


def plot_curves(result: dict, out: Path) -> str:
    acts = result["config"]["activations"]
    fig, axes = plt.subplots(len(acts), 2, figsize=(11, 3.8 * len(acts)), squeeze=False, layout="constrained")
    for (ax_f1, ax_loss), act in zip(axes, acts):
        for r in (r for r in result["runs"] if r["activation"] == act):
            color, ls = _style(r)
            e = [h["epoch"] for h in r["history"]]
            ax_f1.plot(e, [h["dev_f1"] for h in r["history"]], "o", ls=ls, ms=3, color=color, label=r["label"])
            ax_loss.plot(e, [h["train_loss"] for h in r["history"]], "o", ls=ls, ms=3, color=color, label=r["label"])
        ax_f1.set(xlabel="epoch", ylabel="dev entity F1", title=f"{act}: dev F1 per epoch", ylim=(-0.02, 1.0))
        ax_loss.set(xlabel="epoch", ylabel="mean training cross-entropy", title=f"{act}: training loss per epoch")
        for ax in (ax_f1, ax_loss):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    c = result["config"]
    fig.suptitle(f"{result['corpus_short']}: {c['optimizer']} lr {c['learning_rate']}, H = {c['hidden_dim']}, batch {c['batch_size']}, same seed", fontsize=10)
    plots.save(fig, out / "learning_curves.png")
    return "learning_curves.png"


ZERO_DRAWN_AT = 1e-12


def plot_symmetry(result: dict, out: Path) -> str:
    acts, H = result["config"]["activations"], result["config"]["hidden_dim"]
    panels = (("distinct_units", "distinct hidden units"), ("max_unit_difference_rel", "max |unit_i - unit_j| / max |entry|"),
              ("h_std_across_units", "std of h across units (dev)"))  # fmt: skip
    fig, axes = plt.subplots(len(acts), 3, figsize=(14, 3.8 * len(acts)), squeeze=False, layout="constrained")
    for row, act in zip(axes, acts):
        for ax, (key, title) in zip(row, panels):
            for r in (r for r in result["runs"] if r["activation"] == act and r["hidden_dim"] > 1):
                color, ls = _style(r)
                steps = np.asarray([p["step"] for p in r["trace"]], float)
                values = [p[key] if key == "distinct_units" else max(p[key], ZERO_DRAWN_AT) for p in r["trace"]]
                ax.plot(steps + 1, values, "o", ls=ls, ms=3, color=color, label=r["label"])
            ax.set_xscale("log")
            ax.set(xlabel="training step + 1", title=f"{act}: {title}")
            if key == "distinct_units":
                ax.set_ylim(0, H * 1.08)
            else:  # exact zeros (tanh from zero) are drawn at ZERO_DRAWN_AT so a log axis shows them
                ax.set_yscale("log")
                ax.set_ylim(ZERO_DRAWN_AT / 3, 10)
                ax.set_ylabel(f"(exactly 0 drawn at {ZERO_DRAWN_AT:g})", fontsize=8)
            if key == "max_unit_difference_rel":
                ax.axhline(SAME_UNIT_RTOL, color="k", ls=":", lw=1)
                ax.annotate("tolerance", (1, SAME_UNIT_RTOL), xytext=(2, 2), textcoords="offset points", fontsize=7)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle(f"{result['corpus_short']}: symmetry of the {H} hidden units during training", fontsize=10)
    plots.save(fig, out / "symmetry.png")
    return "symmetry.png"


# ----------------------------------------------------------------------------- verdict


def _find(runs, act, init, dropout=0.0, one_unit=False):
    return next(r for r in runs if r["activation"] == act and r["init"] == init and r["dropout"] == dropout and (r["hidden_dim"] == 1) == one_unit)


def roundoff_growth(trace: list) -> dict:
    """How the zero start's float32 round-off differences between units evolve: the first step with
    any difference, the relative difference then and at the end, the growth per 100 steps (a
    least-squares fit of log10 difference against step), and the first step past the tolerance."""
    nonzero = [p for p in trace if p["max_unit_difference_rel"] > 0]
    if not nonzero:
        return {"bit_identical": True}
    steps = np.asarray([p["step"] for p in nonzero], float)
    logs = np.log10([p["max_unit_difference_rel"] for p in nonzero])
    slope = float(np.polyfit(steps, logs, 1)[0]) if len(nonzero) > 2 else float("nan")
    past = next((p["step"] for p in trace if p["distinct_units"] > 1), None)
    return {"bit_identical": False, "first_step": nonzero[0]["step"], "first_rel": nonzero[0]["max_unit_difference_rel"],
            "end_rel": trace[-1]["max_unit_difference_rel"], "growth_per_100_steps": 10 ** (100 * slope),
            "first_step_past_tolerance": past}  # fmt: skip


def judge(result: dict) -> dict:
    """Each part of the claim, per activation, decided from the numbers."""
    runs, H = result["runs"], result["config"]["hidden_dim"]
    parts = {}
    for act in result["config"]["activations"]:
        z, nrm, xav, one = (_find(runs, act, "zeros"), _find(runs, act, "normal"), _find(runs, act, "xavier"),
                            _find(runs, act, "xavier", one_unit=True))  # fmt: skip
        parts[act] = {
            "zeros_stay_symmetric": all(p["distinct_units"] == 1 and p["W_rank"] <= 1 for p in z["trace"]),
            "zeros_identical_gradients": all(p["distinct_grad_W_rows"] == 1 for p in z["trace"]),
            "random_inits_break_symmetry": all(p["distinct_units"] == H for r in (nrm, xav) for p in r["trace"]),
            "zeros_no_better_than_one_unit": z["best_dev_f1"] <= one["best_dev_f1"] + 0.02,
            "xavier_trains_well": xav["best_dev_f1"] >= max(nrm["best_dev_f1"], z["best_dev_f1"]) - 0.01 and xav["best_dev_f1"] >= z["best_dev_f1"] + 0.1,
            "dropout_breaks_symmetry": _find(runs, act, "zeros", result["config"]["dropout_demo"])["end"]["distinct_units"] > 1,
            "zeros_roundoff": roundoff_growth(z["trace"]),
        }  # fmt: skip
    return parts


JUDGED = ("zeros_stay_symmetric", "zeros_identical_gradients", "random_inits_break_symmetry", "zeros_no_better_than_one_unit", "xavier_trains_well")


def verdict_of(parts: dict) -> str:
    held = [bool(p[k]) for p in parts.values() for k in JUDGED]
    return "supported" if all(held) else ("partly supported" if any(held) else "not supported")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    cfg = QUICK if args.quick else (CONLL if args.conll else Config())
    corpus = load_corpus(args)
    subset = corpus.train[: cfg.train_sentences] if cfg.train_sentences else None
    prepared = prepare(corpus, train_config(cfg, Variant("tanh", "xavier", cfg.hidden_dim, 0.0)), subset)
    step_cache = {}
    runs = [run_variant(cfg, prepared, v, step_cache) for act in cfg.activations for v in variants(cfg, act)]
    result = {
        "name": NAME, "config": dataclasses.asdict(cfg),
        "train_config": dataclasses.asdict(train_config(cfg, Variant("tanh", "xavier", cfg.hidden_dim, 0.0)))
        | {"activation": "per variant", "init": "per variant", "hidden_dim": "per variant", "dropout": "per variant"},
        **corpus_fields(args, corpus, prepared, subset),
        "same_unit_rtol": SAME_UNIT_RTOL, "runs": runs,
        "claim": "zero initialisation keeps hidden units identical (no better than one unit); normal / Xavier break the symmetry; Xavier trains well",
    }  # fmt: skip
    result["parts"] = judge(result)
    result["verdict"] = verdict_of(result["parts"])
    files = [plot_curves(result, args.out), plot_symmetry(result, args.out)]
    md = section(number=5, title="Initialisation: zeros keep the hidden units symmetric" + (" (CoNLL-2003)" if args.conll else " (synthetic)"),
                 claim="Initialising all weights to zero leaves the hidden units symmetric: they receive identical gradients "
                       "and stay identical, so the network is no better than one with a single hidden unit. Small random "
                       "(normal) or Xavier initialisation breaks the symmetry, and Xavier trains well.",
                 measured=_measured(result), verdict=result["verdict"], why=_why(result), plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def _measured(result) -> list:
    s, c, t = result["sizes"], result["config"], result["train_config"]
    lines = [
        (f"Corpus: {result['corpus']}; {s['train_sentences']} training sentences ({s['train_windows']} windows), "
        f"{s['dev_windows']} dev windows, V = {s['vocab']}. Every run: window {t['window']}, {t['optimizer']} "
        f"({'SGD with momentum 0.9' if t['optimizer'] == 'momentum' else t['optimizer']}) at a constant rate {t['learning_rate']}, "
        f"batch {t['batch_size']}, {t['epochs']} epochs, seed {t['seed']} (same data order), no L2 / word dropout / casing feature, "
        f"E seeded from the word vectors and fine-tuned. Symmetry is measured before steps {', '.join(map(str, c['watch_steps']))} "
        f"and after every epoch; units are compared as [W_i, b_i, U_:i] with tolerance {result['same_unit_rtol']:.2g} × the "
        f"largest |entry|; gradients on the first {c['probe_windows']} training windows, h on the first {c['activation_windows']} dev windows."),
        "Per run (at the end of training; 'distinct' counts units / dJ/dW rows that differ):",
    ]  # fmt: skip
    table = [("| f | init | H | dropout | distinct units | max unit difference (relative) | rank W | σ2/σ1 of W | std of h across units | distinct dJ/dW rows | "
              "best dev F1 (epoch) | mean dev F1 over epochs | test F1 | final train loss |"), "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["runs"]:
        e = r["end"]
        table.append(f"| {r['activation']} | {r['init']} | {r['hidden_dim']} | {r['dropout']:g} | {e['distinct_units']} | "
                     f"{fmt(e['max_unit_difference_rel'])} | {e['W_rank']} | {fmt(e['W_sv2_over_sv1'])} | {fmt(e['h_std_across_units'])} | {e['distinct_grad_W_rows']} | "
                     f"{r['best_dev_f1']:.3f} ({r['best_epoch']}) | {r['mean_dev_f1_over_epochs']:.3f} | {(r['test_f1'] or 0):.3f} | "
                     f"{fmt(r['final_train_loss'] or float('nan'))} |" + (" diverged |" if r["diverged"] else ""))  # fmt: skip
    lines[-1] += "\n\n" + "\n".join(table) + "\n"
    for act in c["activations"]:
        tr = _find(result["runs"], act, "zeros")["trace"]
        rel = [p["max_unit_difference_rel"] for p in tr]
        first_nonzero = next((p for p in tr if p["max_unit_difference"] > 0), None)
        line = (f"{act}, zeros, measured {len(tr)} times (steps {tr[0]['step']}–{tr[-1]['step']}): distinct units "
                f"{sorted({p['distinct_units'] for p in tr})}, distinct dJ/dW rows {sorted({p['distinct_grad_W_rows'] for p in tr})}, "
                f"largest σ2/σ1 of W {fmt(max(p['W_sv2_over_sv1'] for p in tr))}, largest std of h across units "
                f"{fmt(max(p['h_std_across_units'] for p in tr))} (mean |h| {fmt(tr[-1]['h_mean_abs'])}). ")  # fmt: skip
        if first_nonzero is None:
            line += "The units are bit-identical at every measurement. "
        else:
            line += (f"Not bit-identical: float32 round-off makes them differ from step {first_nonzero['step']} on "
                     f"(relative difference {fmt(first_nonzero['max_unit_difference_rel'])}), growing to {fmt(rel[-1])} "
                     f"by step {tr[-1]['step']} (dJ/dW rows: {fmt(tr[-1]['grad_W_row_spread'])} against ||dJ/dW|| "
                     f"{fmt(tr[-1]['grad_W_norm'])}). ")  # fmt: skip
        moved = [p["step"] for p in tr if p["W_norm"] > 0]
        if moved:
            line += f"W first moves before step {moved[0]} and ends at ||W|| = {fmt(tr[-1]['W_norm'])}, ||U|| = {fmt(tr[-1]['U_norm'])}."
        else:
            line += (f"W stays exactly 0 (||dJ/dW|| = {fmt(max(p['grad_W_norm'] for p in tr))} throughout) and ||U|| = "
                     f"{fmt(tr[-1]['U_norm'])}: f(0) = 0 gives h = 0, hence dJ/dU = 0, and U = 0 gives dJ/dh = 0, hence "
                     "dJ/dW = dJ/db = dJ/dE = 0 -- only the output bias c learns (the class prior).")  # fmt: skip
        lines.append(line)
    return lines


def _why(result) -> str:
    parts, runs, H = result["parts"], result["runs"], result["config"]["hidden_dim"]
    out = []
    for act, p in parts.items():
        z, xav, nrm, one = (_find(runs, act, "zeros"), _find(runs, act, "xavier"), _find(runs, act, "normal"),
                            _find(runs, act, "xavier", one_unit=True))  # fmt: skip
        zd = _find(runs, act, "zeros", result["config"]["dropout_demo"])
        bits = [f"{act}:"]
        ro = p["zeros_roundoff"]
        if p["zeros_stay_symmetric"] and p["zeros_identical_gradients"]:
            bits.append(f"zeros keep all {H} units identical throughout"
                        + (" (bit for bit)" if ro["bit_identical"] else
                           f" up to float32 round-off, which grows from {fmt(ro['first_rel'])} after step {ro['first_step']} to "
                           f"{fmt(ro['end_rel'])} relative at the end (about {ro['growth_per_100_steps']:.2g}× per 100 steps by a "
                           "log-linear fit; faster than round-off piling up step by step, as if the symmetric state were "
                           "unstable, so a long enough float32 run might separate the units, which exact arithmetic never would)")
                        + ", with identical gradient rows")  # fmt: skip
        elif not ro["bit_identical"] and ro["first_rel"] <= roundoff_tolerance(np.float32, result["config"]["batch_size"], 1.0):
            bits.append(f"zeros start identical and get identical gradients up to float32 round-off ({fmt(ro['first_rel'])} relative "
                        f"after step {ro['first_step']}), but the symmetric state is unstable: the round-off differences grow "
                        f"about {ro['growth_per_100_steps']:.2g}× per 100 steps and pass the {SAME_UNIT_RTOL:.2g} tolerance at step "
                        f"{ro['first_step_past_tolerance']} ({fmt(ro['end_rel'])} at the end) -- exact arithmetic would keep them "
                        "identical, float32 does not for ever")  # fmt: skip
        else:
            bits.append("zero initialisation did NOT keep the units identical (see the table)")
        bits.append(f"and reach dev F1 {z['best_dev_f1']:.3f} against {one['best_dev_f1']:.3f} for a one-unit network"
                    + (" (no better);" if p["zeros_no_better_than_one_unit"] else " (better than one unit);"))
        bits.append(f"normal and Xavier start and stay with {H} distinct units;" if p["random_inits_break_symmetry"]
                    else "normal or Xavier did not keep all units distinct;")
        bits.append(f"Xavier reaches dev F1 {xav['best_dev_f1']:.3f} (normal {nrm['best_dev_f1']:.3f}; mean over epochs "
                    f"{xav['mean_dev_f1_over_epochs']:.3f} vs {nrm['mean_dev_f1_over_epochs']:.3f})"
                    + (", training well." if p["xavier_trains_well"] else ", not the best here."))
        bits.append(f"Dropout {zd['dropout']:g} on a zero start {'does' if p['dropout_breaks_symmetry'] else 'does not'} break the symmetry "
                    f"({zd['end']['distinct_units']} distinct unit{'s' if zd['end']['distinct_units'] != 1 else ''} after training"
                    + ("" if p["dropout_breaks_symmetry"] else "; with h = f(0) = 0 and U = 0 every gradient is 0, masked or not")
                    + ").")  # fmt: skip
        out.append(" ".join(bits))
    return " ".join(out)


if __name__ == "__main__":
    main(sys.argv[1:])
