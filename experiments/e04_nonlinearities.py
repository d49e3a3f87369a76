"""E04: the choice of nonlinearity f matters -- sigmoid saturates and starves the first layer of
gradient; ReLU-family units train faster; (hard)tanh is fine; leaky ReLU / PReLU have no dead units.

Claims (the lecture's "non-linearities" slides): the logistic sigmoid's derivative is at most 1/4,
so the error signal delta = dJ/dh o f'(z) reaching W (the first layer) is small and learning is
slow; tanh (a rescaled sigmoid, f' <= 1) and hard tanh work well; ReLU "trains quickly and
performs well due to good gradient backflow"; a ReLU unit with z <= 0 on every input is dead
(f' = 0, it never learns again), which leaky ReLU and PReLU avoid by a small negative slope.

Every activation of ``jaxbackprop.nonlinearities.ACTIVATIONS`` is trained at an equal budget:
same corpus, sizes, seed (hence the same initial W, U and E), epochs and plain SGD at one
constant learning rate (adaptive optimizers such as Adam rescale each gradient and would hide the
differences in gradient size). On a fixed training batch, at initialisation and at the trained
(best-dev) parameters, we measure ||dJ/dW||, ||dJ/dU||, the per-window ||d loss_b / d x_b|| (the
rows dJ/dE receives) and the mean local gradient f'(z); on a dev batch, the fraction of hidden units
with f'(z) = 0 on every window (dead units).

    python experiments/e04_nonlinearities.py            # ~1.5 min on 2 busy CPU cores
    python experiments/e04_nonlinearities.py --quick    # ~10 s
    python experiments/e04_nonlinearities.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt          # ~8 min

Expected: sigmoid has the smallest first-layer gradient (mean f' about 0.25 at initialisation)
and the slowest learning curve; tanh and hard tanh train well; the ReLU family learns faster than
tanh on CoNLL-2003 but not on the small synthetic set (where tanh's f' ~ 1 near 0 helps); no ReLU
unit dies at this rate, and leaky ReLU / PReLU cannot (f' is their slope, not 0, for z <= 0).
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
from common import corpus_fields, fmt, load_corpus, parse_args, prepare, section, write_results

from jaxbackprop import backprop, plots, train
from jaxbackprop import nonlinearities as nl

NAME = "e04_nonlinearities"
RELU_FAMILY = ("relu", "leaky_relu", "prelu")
TANH_FAMILY = ("tanh", "hardtanh")


@dataclasses.dataclass(frozen=True)
class Config:
    train_sentences: int = 1000  # a training subset: the synthetic corpus is learnt in 2 epochs otherwise
    window: int = 5
    hidden_dim: int = 100
    optimizer: str = "sgd"  # plain SGD: the step is exactly lr * gradient, so gradient size shows
    learning_rate: float = 0.1
    epochs: int = 8
    batch_size: int = 64
    probe_windows: int = 512  # the fixed training batch the gradients are measured on
    dead_windows: int = 2048  # dev windows a unit must be off on to count as dead
    seed: int = 0
    activations: tuple = nl.ACTIVATIONS


# --quick: four of the six (each activation costs ~3 compiles); prelu is kept for its learnt slope
QUICK = Config(train_sentences=300, hidden_dim=16, epochs=3, probe_windows=128, dead_windows=256,
               activations=("sigmoid", "tanh", "relu", "prelu"))
# Real data: the whole CoNLL-2003 training set, a larger model, a larger batch (fewer, cheaper steps)
CONLL = Config(train_sentences=0, hidden_dim=300, learning_rate=0.1, epochs=6, batch_size=256)


def train_config(cfg: Config, activation: str) -> train.TrainConfig:
    """Every field pinned; only the activation differs between runs."""
    return train.TrainConfig(
        window=cfg.window, hidden_dim=cfg.hidden_dim, activation=activation, init="xavier", l2=0.0, dropout=0.0,
        input_dropout=None, word_dropout=0.0, casing_dim=0, embed_dim=50, optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate, schedule="constant", decay_epochs=1, decay_rate=1.0, epochs=cfg.epochs,
        batch_size=cfg.batch_size, patience=0, seed=cfg.seed, grad="manual", impl="pure", embeddings_mode="finetune",
        sparse=False, min_count=1, decode="argmax",  # the recorded results were decoded per token
    )  # fmt: skip


# ----------------------------------------------------------------------------- training


def train_keep_params(tcfg: train.TrainConfig, prepared: train.Prepared, mcfg, params):
    """Train from ``params`` as ``train.train_and_evaluate`` does (same shuffling, keys, dev-F1 model
    selection), without its files: (per-epoch history, summary, best-dev params).

    A diverged run (non-finite training loss) stops and keeps the epochs before it.
    """
    steps = math.ceil(len(prepared.train.windows) / tcfg.batch_size)
    opt_state, step = train.make_step_for(tcfg, mcfg, params, steps)
    history, best, best_params, best_epoch, diverged = [], -1.0, params, None, False
    for epoch in range(1, tcfg.epochs + 1):
        t0 = time.perf_counter()
        params, opt_state, train_loss = train.run_epoch(step, params, opt_state, prepared.train, tcfg, mcfg, epoch, steps)
        if not math.isfinite(train_loss):
            diverged = True
            break
        dev = train.evaluate(params, prepared.dev, prepared.tags, mcfg, "argmax")
        history.append({"epoch": epoch, "train_loss": train_loss, "dev_loss": dev["loss"], "dev_f1": dev["f1"],
                        "dev_accuracy": dev["accuracy"], "seconds": time.perf_counter() - t0})  # fmt: skip
        if dev["f1"] > best:  # the dense step does not donate its inputs: keeping a reference is safe
            best, best_params, best_epoch = dev["f1"], params, epoch
    summary = {"diverged": diverged, "dev_f1": max(best, 0.0), "best_epoch": best_epoch}
    if history:
        summary["test_f1"] = train.evaluate(best_params, prepared.test, prepared.tags, mcfg, "argmax")["f1"]
    return history, summary, best_params if history else None


# ----------------------------------------------------------------------------- gradient probes


def fixed_batch(ds, n: int) -> dict:
    """The first ``n`` windows of a split, in order (the same for every activation)."""
    return {"windows": jnp.asarray(ds.windows[:n]), "labels": jnp.asarray(ds.labels[:n])}


@functools.partial(jax.jit, static_argnames="mcfg")
def first_layer_probe(params, batch, dev_windows, mcfg) -> dict:
    """Gradient sizes at the first layer on a training batch, and unit activity on dev windows (no dropout).

    ``J`` is the mean over the B windows, so ``B * dJ/dx_b`` is the gradient of window b's own loss
    with respect to its input x_b -- the rows that dJ/dE receives. A unit is dead when f'(z) = 0 on
    every dev window, saturated when f'(z) <= 1e-3 on every dev window.
    """
    J, grads, (_, rows) = backprop.manual_value_and_row_grads(params, batch, mcfg)
    B = batch["windows"].shape[0]
    dx = B * rows.reshape(B, -1)  # (B, n d)
    fprime = _fprime(params, batch["windows"], mcfg)  # (B, H)
    fprime_dev = _fprime(params, dev_windows, mcfg)  # (B_dev, H)
    return {
        "loss": J, "grad_W": jnp.linalg.norm(grads["W"]), "grad_U": jnp.linalg.norm(grads["U"]),
        "grad_x_per_window": jnp.mean(jnp.linalg.norm(dx, axis=1)), "mean_fprime": jnp.mean(fprime),
        "dead_fraction": jnp.mean(jnp.all(fprime_dev == 0, axis=0)),
        "saturated_fraction": jnp.mean(jnp.all(fprime_dev <= 1e-3, axis=0)),
        "zero_fprime_fraction": jnp.mean(fprime_dev == 0),
    }  # fmt: skip


def _fprime(params, windows, mcfg):
    """The local gradient f'(z) of every hidden unit on every window, (B, H)."""
    _, (_, _, _, z, a, _) = backprop.window_fwd(params, windows, None, mcfg, None)
    return nl.derivative(mcfg.activation, z, a, params.get("alpha"))


def probe(params, prepared: train.Prepared, mcfg, cfg: Config) -> dict:
    dev_windows = jnp.asarray(prepared.dev.windows[: cfg.dead_windows])
    out = {k: float(v) for k, v in first_layer_probe(params, fixed_batch(prepared.train, cfg.probe_windows), dev_windows, mcfg).items()}
    out["grad_W_over_grad_U"] = out["grad_W"] / out["grad_U"]
    if "alpha" in params:
        out["prelu_alpha"] = float(params["alpha"])
    return out


# ----------------------------------------------------------------------------- one activation


def run_activation(cfg: Config, prepared: train.Prepared, activation: str) -> dict:
    tcfg = train_config(cfg, activation)
    mcfg = train.model_config(tcfg, prepared)
    params0 = train.compiled_init_params(jax.random.key(tcfg.seed), mcfg, tcfg.init, prepared.embeddings)
    at_init = probe(params0, prepared, mcfg, cfg)
    t0 = time.perf_counter()
    history, summary, params = train_keep_params(tcfg, prepared, mcfg, params0)
    trained = probe(params, prepared, mcfg, cfg) if params is not None else None
    f1s = [r["dev_f1"] for r in history]
    row = {
        "activation": activation, "diverged": summary["diverged"], "history": history,
        "best_dev_f1": summary.get("dev_f1", max(f1s, default=0.0)), "best_epoch": summary.get("best_epoch"),
        "final_dev_f1": f1s[-1] if f1s else 0.0, "test_f1": summary.get("test_f1"),
        # the mean dev F1 over the epochs: higher = learnt sooner (area under the learning curve)
        "mean_dev_f1_over_epochs": float(np.mean(f1s)) if f1s else 0.0,
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "at_init": at_init, "trained": trained, "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    print(f"{NAME}: {activation:<10} dev F1 {row['best_dev_f1']:.3f} (mean over epochs {row['mean_dev_f1_over_epochs']:.3f}), "
          f"test F1 {row['test_f1'] or 0:.3f}; ||dJ/dW|| init {at_init['grad_W']:.3g}, mean f' {at_init['mean_fprime']:.3f}; "
          f"{row['seconds']:.0f}s", flush=True)  # fmt: skip
    return row


# ----------------------------------------------------------------------------- plots


COLORS = {"sigmoid": "tab:red", "tanh": "tab:blue", "hardtanh": "tab:cyan", "relu": "tab:green",
          "leaky_relu": "tab:olive", "prelu": "tab:purple"}  # fmt: skip


def plot_curves(result: dict, out: Path) -> str:
    fig, (ax_f1, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for r in result["runs"]:
        h = r["history"]
        epochs = [e["epoch"] for e in h]
        ax_f1.plot(epochs, [e["dev_f1"] for e in h], "o-", ms=3, color=COLORS.get(r["activation"]), label=r["activation"])
        ax_loss.plot(epochs, [e["train_loss"] for e in h], "o-", ms=3, color=COLORS.get(r["activation"]), label=r["activation"])
    ax_f1.set(xlabel="epoch", ylabel="dev entity F1", title="dev F1 per epoch", ylim=(-0.02, 1.0))
    ax_loss.set(xlabel="epoch", ylabel="mean training cross-entropy", title="training loss per epoch")
    for ax in (ax_f1, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    c = result["config"]
    fig.suptitle(f"{result['corpus_short']}: SGD lr {c['learning_rate']}, H={c['hidden_dim']}, batch {c['batch_size']}, same seed", fontsize=10)
    plots.save(fig, out / "learning_curves.png")
    return "learning_curves.png"


def plot_gradients(result: dict, out: Path) -> str:
    runs = result["runs"]
    names = [r["activation"] for r in runs]
    x = np.arange(len(names))
    panels = (("grad_W", "||dJ/dW||  (first layer)", True), ("grad_x_per_window", "mean ||d loss_b / d x_b||  (rows of dJ/dE)", True),
              ("mean_fprime", "mean f'(z) on the batch", False), ("dead_fraction", "dead units (f' = 0 on every dev window)", False))  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (key, title, log) in zip(axes.ravel(), panels):
        init = [r["at_init"][key] for r in runs]
        done = [r["trained"][key] if r["trained"] else np.nan for r in runs]
        ax.bar(x - 0.2, init, 0.4, label="at initialisation", color="0.65")
        ax.bar(x + 0.2, done, 0.4, label="after training (best dev epoch)", color=[COLORS.get(n) for n in names])
        ax.set_xticks(x, names, fontsize=8)
        ax.set_title(title, fontsize=10)
        if key == "dead_fraction":  # often all zero: write the numbers so an empty panel still reads
            ax.set_ylim(0, max(0.05, 1.2 * np.nanmax([*init, *done])))
            for xi, v in zip(x + 0.2, done):
                ax.annotate(f"{100 * v:.1f}%", (xi, v), ha="center", va="bottom", fontsize=7)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{result['corpus_short']}: gradient reaching the first layer on a fixed batch of "
                 f"{result['config']['probe_windows']} training windows", fontsize=10)  # fmt: skip
    plots.save(fig, out / "first_layer_gradients.png")
    return "first_layer_gradients.png"


# ----------------------------------------------------------------------------- verdict


def judge(result: dict) -> dict:
    """Each part of the claim, decided from the numbers (parts whose activations did not run are False)."""
    by = {r["activation"]: r for r in result["runs"]}
    others = [a for a in by if a != "sigmoid"]
    speed = {a: by[a]["mean_dev_f1_over_epochs"] for a in by}
    best = {a: by[a]["best_dev_f1"] for a in by}
    loss = {a: by[a]["final_train_loss"] if by[a]["final_train_loss"] is not None else math.inf for a in by}
    relu = [speed[a] for a in RELU_FAMILY if a in by]
    tanh = [speed[a] for a in TANH_FAMILY if a in by]
    has_sigmoid = "sigmoid" in by and bool(others)
    return {
        "sigmoid_smallest_first_layer_gradient": has_sigmoid and all(by["sigmoid"]["at_init"]["grad_W"] < by[a]["at_init"]["grad_W"] for a in others),
        # slowest: the highest final training loss, and no activation with a lower mean dev F1 over the epochs
        "sigmoid_slowest": has_sigmoid and all(speed["sigmoid"] <= speed[a] and loss["sigmoid"] > loss[a] for a in others),
        # ReLU family (mean of those run) learns at least as fast as the tanh family (mean of those run)
        "relu_family_at_least_as_fast_as_tanh_family": bool(relu and tanh) and float(np.mean(relu)) >= float(np.mean(tanh)),
        "relu_family_mean_speed": float(np.mean(relu)) if relu else None,
        "tanh_family_mean_speed": float(np.mean(tanh)) if tanh else None,
        # "(hard)tanh is fine": within 0.05 dev F1 of the best activation
        "tanh_family_fine": bool(tanh) and all(best[a] >= max(best.values()) - 0.05 for a in TANH_FAMILY if a in by),
        "relu_dead_fraction_trained": by["relu"]["trained"]["dead_fraction"] if by.get("relu", {}).get("trained") else None,
        "leaky_prelu_dead_free": all(by[a]["trained"] and by[a]["trained"]["dead_fraction"] == 0 for a in ("leaky_relu", "prelu") if a in by),
    }  # fmt: skip


def verdict_of(parts: dict) -> str:
    keys = ("sigmoid_smallest_first_layer_gradient", "sigmoid_slowest", "relu_family_at_least_as_fast_as_tanh_family", "tanh_family_fine")
    held = sum(bool(parts[k]) for k in keys)
    return "supported" if held == len(keys) else ("partly supported" if held else "not supported")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    cfg = QUICK if args.quick else (CONLL if args.conll else Config())
    corpus = load_corpus(args)
    subset = corpus.train[: cfg.train_sentences] if cfg.train_sentences else None
    prepared = prepare(corpus, train_config(cfg, "relu"), subset)
    runs = [run_activation(cfg, prepared, a) for a in cfg.activations]
    result = {
        "name": NAME, "config": dataclasses.asdict(cfg), "train_config": dataclasses.asdict(train_config(cfg, "relu")) | {"activation": "each of config.activations"},
        **corpus_fields(args, corpus, prepared, subset),
        "runs": runs,
        "claim": "sigmoid saturates and passes small gradients to the first layer; ReLU-family units train faster; "
                 "(hard)tanh is fine; leaky ReLU / PReLU avoid dead units",
    }  # fmt: skip
    result["parts"] = judge(result)
    result["verdict"] = verdict_of(result["parts"])
    files = [plot_curves(result, args.out), plot_gradients(result, args.out)]
    md = section(number=4, title="Nonlinearities: saturation, gradient flow and dead units" + (" (CoNLL-2003)" if args.conll else " (synthetic)"),
                 claim="The choice of f matters: sigmoid (and tanh) saturate and pass small gradients back to the first "
                       "layer; ReLU-family units train faster and better; hard tanh / tanh are fine; leaky ReLU and "
                       "PReLU avoid dead units.",
                 measured=_measured(result), verdict=result["verdict"], why=_why(result), plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def train_config_fields(result) -> str:
    t = result["train_config"]
    return (f"window {t['window']}, H = {t['hidden_dim']}, Xavier init, plain {t['optimizer'].upper()} at a constant rate "
            f"{t['learning_rate']}, batch {t['batch_size']}, {t['epochs']} epochs, seed {t['seed']}, no dropout / L2 / casing feature, "
            f"E fine-tuned")  # fmt: skip


def _measured(result) -> list:
    s, c = result["sizes"], result["config"]
    runs = result["runs"]
    lines = [
        (f"Corpus: {result['corpus']}; {s['train_sentences']} training sentences ({s['train_windows']} windows), "
        f"{s['dev_windows']} dev windows, V = {s['vocab']}. Each activation: {train_config_fields(result)}; the same "
        f"initial W, U, E for all (equal seed). Gradients on the first {c['probe_windows']} training windows, dead units "
         f"on the first {c['dead_windows']} dev windows."),
        "Per activation (dℓ/dx: the gradient of one window's loss with respect to its input x, i.e. the rows dJ/dE receives):",
    ]  # fmt: skip
    table = [("| f | best dev F1 (epoch) | mean dev F1 over epochs | test F1 | final train loss | ‖dJ/dW‖ init → trained | "
              "‖dJ/dW‖ / ‖dJ/dU‖ init | mean ‖dℓ/dx‖ init → trained | mean f'(z) init → trained | dead units trained |"),
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        i, t = r["at_init"], r["trained"] or {}
        table.append(
            f"| {r['activation']} | {r['best_dev_f1']:.3f} ({r['best_epoch']}) | {r['mean_dev_f1_over_epochs']:.3f} | "
            f"{(r['test_f1'] or 0):.3f} | {fmt(r['final_train_loss'] or float('nan'))} | {fmt(i['grad_W'])} → {fmt(t.get('grad_W', float('nan')))} | "
            f"{fmt(i['grad_W_over_grad_U'])} | {fmt(i['grad_x_per_window'])} → {fmt(t.get('grad_x_per_window', float('nan')))} | "
            f"{i['mean_fprime']:.3f} → {t.get('mean_fprime', float('nan')):.3f} | {100 * t.get('dead_fraction', float('nan')):.1f}% |"
            + (" diverged |" if r["diverged"] else "")
        )  # fmt: skip
    # the table follows the bullet as its own block (a blank line ends the list)
    lines[-1] = lines[-1] + "\n\n" + "\n".join(table) + "\n"
    by = {r["activation"]: r for r in runs}
    if by.get("relu", {}).get("trained"):
        rt = by["relu"]["trained"]
        others = "; ".join(f"{a}: {100 * by[a]['trained']['dead_fraction']:.1f}%" for a in ("leaky_relu", "prelu", "hardtanh") if by.get(a, {}).get("trained"))
        lines.append(f"ReLU after training: {100 * rt['dead_fraction']:.1f}% of the hidden units are dead (f' = 0 on all "
                     f"{c['dead_windows']} dev windows; {100 * by['relu']['at_init']['dead_fraction']:.1f}% at initialisation); "
                     f"{100 * rt['zero_fprime_fraction']:.0f}% of (window, unit) pairs are off. Units with f' = 0 on every dev "
                     f"window for the others: {others} (leaky ReLU / PReLU: f' is the slope, not 0, for z <= 0; hard tanh: saturated).")  # fmt: skip
    if by.get("prelu", {}).get("trained"):
        alpha = by["prelu"]["trained"]["prelu_alpha"]
        shape = ("close to |z|: the negative side is mirrored" if alpha < -0.5 else "non-monotone" if alpha < 0
                 else "steeper on the negative side than on the positive" if alpha > 1 else "a leaky ReLU")  # fmt: skip
        lines.append(f"PReLU's slope alpha (one scalar shared by all units): {nl.PRELU_ALPHA_INIT} at initialisation, "
                     f"{alpha:.3f} after training, so its f is {shape}.")  # fmt: skip
    return lines


def _why(result) -> str:
    p, by = result["parts"], {r["activation"]: r for r in result["runs"]}
    sig = by["sigmoid"]["at_init"]
    out = []
    if p["sigmoid_smallest_first_layer_gradient"]:
        out.append(f"Sigmoid's local gradient f'(z) is at most 1/4 (mean {sig['mean_fprime']:.3f} at initialisation), so the "
                   f"first layer gets the smallest gradient ({fmt(sig['grad_W'])}"
                   + (f" vs {fmt(by['tanh']['at_init']['grad_W'])} for tanh" if "tanh" in by else "")
                   + f" from the same initial weights) and the smallest share of it: ||dJ/dW|| / ||dJ/dU|| = "
                   f"{fmt(sig['grad_W_over_grad_U'])}, the head's gradient being larger because h = sigmoid(z) is about 0.5, not 0.")  # fmt: skip
    else:
        out.append("Sigmoid does not give the smallest first-layer gradient here.")
    out.append("With the same step size it is the slowest learner." if p["sigmoid_slowest"] else "Yet it is not the slowest learner.")
    rel = f"(mean dev F1 over epochs {fmt(p['relu_family_mean_speed'] or 0)} vs {fmt(p['tanh_family_mean_speed'] or 0)})"
    if p["relu_family_at_least_as_fast_as_tanh_family"]:
        out.append(f"The ReLU family learns at least as fast as tanh / hard tanh {rel}.")
    else:
        why_not = ""
        if "relu" in by and "tanh" in by:
            r, t = by["relu"]["at_init"], by["tanh"]["at_init"]
            why_not = (f": near initialisation a ReLU passes no gradient through the units that are off on a window (mean f' "
                       f"{r['mean_fprime']:.2f} against tanh's {t['mean_fprime']:.2f}), so at one shared SGD rate its "
                       f"first-layer gradient is smaller ({fmt(r['grad_W'])} vs {fmt(t['grad_W'])}). The lecture's argument "
                       "is about deep nets, where products of many f' < 1 shrink the gradient layer by layer; this model has "
                       "a single f' between the loss and W, and with inputs this small tanh's (close to 1) is the larger one")  # fmt: skip
        out.append(f"The ReLU family does not learn faster than tanh / hard tanh at this shared rate {rel}{why_not}.")
    fastest = max(by, key=lambda a: by[a]["mean_dev_f1_over_epochs"])
    out.append(f"The fastest learner is {fastest} (mean dev F1 over epochs {by[fastest]['mean_dev_f1_over_epochs']:.3f})"
               + (f", whose single learnt slope moved from {nl.PRELU_ALPHA_INIT} to {by['prelu']['trained']['prelu_alpha']:.2f} "
                  "(dJ/dalpha sums over every unit and window, so one scalar takes large steps)." if fastest == "prelu" and by["prelu"]["trained"] else "."))
    top = max(by, key=lambda a: by[a]["best_dev_f1"])
    gaps = ", ".join(f"{a} {by[a]['best_dev_f1']:.3f}" for a in TANH_FAMILY if a in by)
    out.append(f"Tanh and hard tanh are within 0.05 dev F1 of the best activation ({gaps} vs {top} {by[top]['best_dev_f1']:.3f})."
               if p["tanh_family_fine"] else f"Tanh or hard tanh end more than 0.05 dev F1 below the best activation ({gaps} vs "
               f"{top} {by[top]['best_dev_f1']:.3f}).")  # fmt: skip
    dead = p["relu_dead_fraction_trained"]
    if dead is not None:
        out.append(f"Dead ReLU units after training: {100 * dead:.1f}%"
                   + (" -- so avoiding them (leaky ReLU / PReLU, 0 by construction) buys little here." if dead < 0.01
                      else "; leaky ReLU and PReLU have none, by construction (f' = slope, not 0, for z <= 0).")
                   + " Only one learning rate was tried: each activation's best rate may differ.")  # fmt: skip
    return " ".join(out)


if __name__ == "__main__":
    main(sys.argv[1:])
