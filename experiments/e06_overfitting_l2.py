"""E06: a big model on a small training set overfits, and L2 regularisation holds the dev loss down.

Claims of the lecture's "regularisation" slide: with many parameters and few examples the
training loss keeps falling while the dev loss reaches a minimum and turns up again
(overfitting); adding ``lambda/2 (||W||^2 + ||U||^2)`` to J (``TrainConfig.l2``) keeps the weights
small and the dev curve lower (a smaller train-dev gap, a later or lower minimum), at the price
of a higher training loss -- too large a lambda underfits.

How L2 enters here (``jaxbackprop.model.loss`` / ``l2_penalty`` and ``backprop``): every step's
objective is the batch's mean cross-entropy plus ``lambda/2 (||W||^2 + ||U||^2)``, and the
gradients get ``+ lambda W`` and ``+ lambda U``; biases b, c, the word vectors E and the casing
table are not penalised. The curves below are the *cross-entropy alone* (no penalty) of the
whole training set and of dev after each epoch, so every lambda is compared on the data fit.

    python experiments/e06_overfitting_l2.py            # ~1 min: 30 sentences, H = 300, 30 epochs, 4 lambdas
    python experiments/e06_overfitting_l2.py --quick    # ~15 s (13 s of CPU; longer on a busy machine)
    python experiments/e06_overfitting_l2.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt     # ~3.5 min: 1000 sentences, 20 epochs, 4 lambdas

Expected: at lambda = 0 the training cross-entropy falls towards 0 while the dev cross-entropy
bottoms out after a few epochs and then rises; lambda > 0 ends with a smaller ||W||, a lower final
dev loss and a smaller gap; the largest lambda has the highest training loss.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, load_corpus, parse_args, prepare, section, write_results  # noqa: E402

from jaxbackprop import plots, train  # noqa: E402

NAME = "e06_overfitting_l2"
RISE_THRESHOLD = 0.05  # a dev loss that ends > 5% above its minimum has "turned up", not jittered


@dataclasses.dataclass(frozen=True)
class Config:
    train_sentences: int = 30  # the first N training sentences: few examples for a big model
    synthetic_vectors: bool = False  # synthetic corpus only: its vectors put synonyms together, so
    #                                  even 30 sentences generalise; without them E starts random
    lambdas: tuple = (0.0, 3e-4, 3e-3, 3e-2)  # L2 strengths, 0 first (the unregularised baseline)
    window: int = 5
    hidden_dim: int = 300  # big: W alone has H * n * d = 75,000 weights for ~300 training windows
    activation: str = "relu"
    optimizer: str = "adam"
    learning_rate: float = 1e-2
    batch_size: int = 32
    epochs: int = 30
    embeddings_mode: str = "finetune"
    seed: int = 0


QUICK = Config(train_sentences=20, lambdas=(0.0, 3e-2), hidden_dim=32, epochs=6)
CONLL = Config(train_sentences=1000, lambdas=(0.0, 1e-3, 1e-2, 1e-1), learning_rate=3e-4, batch_size=64, epochs=20)
CONLL_QUICK = Config(train_sentences=200, lambdas=(0.0, 1e-2), hidden_dim=64, learning_rate=1e-3, batch_size=64, epochs=3)


def train_config(cfg: Config, l2: float) -> train.TrainConfig:
    """Every field pinned: no dropout of any kind (it is a regulariser too), constant rate, no casing."""
    return train.TrainConfig(
        window=cfg.window, hidden_dim=cfg.hidden_dim, activation=cfg.activation, init="xavier", l2=l2,
        dropout=0.0, input_dropout=0.0, word_dropout=0.0, casing_dim=0, embed_dim=50, optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate, schedule="constant", decay_epochs=1, decay_rate=1.0, epochs=cfg.epochs,
        batch_size=cfg.batch_size, patience=0, seed=cfg.seed, grad="manual", impl="pure",
        embeddings_mode=cfg.embeddings_mode, sparse=False, min_count=1, decode="argmax",  # the recorded results were decoded per token
    )  # fmt: skip


def curves_for(tcfg: train.TrainConfig, prepared: train.Prepared) -> list[dict]:
    """Train as ``train.train_and_evaluate`` does (same step, same shuffles), measuring after every epoch:
    cross-entropy (no penalty) of the whole training set and of dev, dev F1, ||W||, ||U|| and the penalty.

    Stops early (the rows so far) if the objective becomes non-finite.
    """
    mcfg, params = train.init_run_params(tcfg, prepared)
    data_only = dataclasses.replace(mcfg, l2=0.0)  # evaluate the cross-entropy alone
    steps = math.ceil(len(prepared.train.windows) / tcfg.batch_size)
    opt_state, step = train.make_step_for(tcfg, mcfg, params, steps)
    rows = []
    for epoch in range(1, tcfg.epochs + 1):
        params, opt_state, objective = train.run_epoch(step, params, opt_state, prepared.train, tcfg, mcfg, epoch, steps)
        if not math.isfinite(objective):
            break
        tr = train.evaluate(params, prepared.train, prepared.tags, data_only, "argmax")
        dev = train.evaluate(params, prepared.dev, prepared.tags, data_only, "argmax")
        w2, u2 = float(jnp.sum(params["W"] ** 2)), float(jnp.sum(params["U"] ** 2))
        rows.append({"epoch": epoch, "objective": objective, "train_loss": tr["loss"], "train_f1": tr["f1"],
                     "dev_loss": dev["loss"], "dev_f1": dev["f1"], "w_norm": math.sqrt(w2), "u_norm": math.sqrt(u2),
                     "penalty": 0.5 * tcfg.l2 * (w2 + u2)})  # fmt: skip
    return rows


def summarise(l2: float, curve: list[dict]) -> dict:
    """The numbers the claim is about, from one lambda's curve."""
    dev = np.array([r["dev_loss"] for r in curve])
    i_min, last = int(np.argmin(dev)), curve[-1]
    best = max(curve, key=lambda r: r["dev_f1"])
    return {
        "l2": l2, "epochs_run": len(curve),
        "min_dev_loss": float(dev[i_min]), "min_dev_epoch": curve[i_min]["epoch"],
        "final_dev_loss": last["dev_loss"], "final_train_loss": last["train_loss"],
        "dev_rise": float(last["dev_loss"] - dev[i_min]), "dev_rise_rel": float(last["dev_loss"] / dev[i_min] - 1),
        "train_loss_at_min_dev": curve[i_min]["train_loss"], "final_gap": last["dev_loss"] - last["train_loss"],
        "best_dev_f1": best["dev_f1"], "best_dev_f1_epoch": best["epoch"], "final_dev_f1": last["dev_f1"],
        "final_w_norm": last["w_norm"], "final_u_norm": last["u_norm"], "final_penalty": last["penalty"],
    }  # fmt: skip


def judge(rows: list[dict]) -> dict:
    """Each part of the claim as a boolean, computed from the per-lambda summaries (rows[0]: lambda = 0)."""
    base, regs = rows[0], rows[1:]
    overfits = base["dev_rise_rel"] > RISE_THRESHOLD and base["final_train_loss"] < base["train_loss_at_min_dev"]
    helps = [r for r in regs if r["final_dev_loss"] < base["final_dev_loss"] and r["final_gap"] < base["final_gap"]]
    strongest = max(rows, key=lambda r: r["l2"])
    return {
        "overfits_without_l2": bool(overfits),
        "l2_lowers_w_norm": all(r["final_w_norm"] < base["final_w_norm"] for r in regs),
        "lambdas_that_help": [r["l2"] for r in helps],
        "l2_holds_dev_down": bool(helps),
        "largest_lambda_highest_train_loss": strongest["final_train_loss"] == max(r["final_train_loss"] for r in rows),
        "largest_lambda_not_best_dev": strongest["min_dev_loss"] > min(r["min_dev_loss"] for r in rows),
    }


def plot(result: dict, out: Path) -> list:
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), gridspec_kw={"hspace": 0.3})
    (ax_train, ax_dev), (ax_f1, ax_w) = axes
    for run in result["runs"]:
        c, s = run["curve"], run["summary"]
        ep, label = [r["epoch"] for r in c], f"lambda = {run['l2']:g}"
        (line,) = ax_train.plot(ep, [r["train_loss"] for r in c], "o-", ms=3, label=label)
        ax_dev.plot(ep, [r["dev_loss"] for r in c], "o-", ms=3, color=line.get_color(), label=label)
        ax_dev.plot([s["min_dev_epoch"]], [s["min_dev_loss"]], "*", ms=14, color=line.get_color(), mec="k")
        ax_f1.plot(ep, [r["dev_f1"] for r in c], "o-", ms=3, color=line.get_color(), label=label)
        ax_w.plot(ep, [r["w_norm"] for r in c], "o-", ms=3, color=line.get_color(), label=label)
    ax_train.set(xlabel="epoch", ylabel="cross-entropy (no penalty)", yscale="log", title="training loss (whole training subset)")
    ax_dev.set(xlabel="epoch", ylabel="cross-entropy (no penalty)", title="dev loss (* = its minimum)")
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title="dev entity F1")
    ax_w.set(xlabel="epoch", ylabel="||W|| (Frobenius)", title="size of the weights")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['data']['train_sentences']} training sentences ({result['data']['train_windows']} windows), "
                 f"H = {result['config']['hidden_dim']}, {result['config']['optimizer']} {result['config']['learning_rate']:g}")  # fmt: skip
    plots.save(fig, out / "overfitting_l2.png")
    return ["overfitting_l2.png"]


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    cfg = (CONLL_QUICK if args.quick else CONLL) if args.conll else (QUICK if args.quick else Config())
    corpus = load_corpus(args)
    if args.conll is None and not cfg.synthetic_vectors and args.embeddings is None:
        corpus = corpus._replace(pretrained=None, source="the embedded synthetic corpus without pretrained vectors (E random, fine-tuned)")
    train_sents = corpus.train[: cfg.train_sentences]
    prepared = prepare(corpus, train_config(cfg, 0.0), train_sents)
    data = {"source": corpus.source, "train_sentences": len(train_sents), "train_windows": len(prepared.train.windows),
            "dev_windows": len(prepared.dev.windows), "vocab_size": len(prepared.vocab)}  # fmt: skip
    runs = []
    for l2 in cfg.lambdas:
        curve = curves_for(train_config(cfg, l2), prepared)
        runs.append({"l2": l2, "summary": summarise(l2, curve), "curve": curve})
        s = runs[-1]["summary"]
        print(f"{NAME}: lambda {l2:g}: dev loss min {s['min_dev_loss']:.4f} at epoch {s['min_dev_epoch']}, final "
              f"{s['final_dev_loss']:.4f} (train {s['final_train_loss']:.4f}), best dev F1 {s['best_dev_f1']:.4f}, ||W|| {s['final_w_norm']:.2f}")  # fmt: skip
    checks = judge([r["summary"] for r in runs])
    verdict = _verdict(checks)
    result = {"name": NAME, "config": dataclasses.asdict(cfg), "train_config": dataclasses.asdict(train_config(cfg, 0.0)),
              "data": data, "runs": runs, "checks": checks, "verdict": verdict,
              "claim": "a big model on little data overfits (dev loss turns up); L2 keeps the dev loss down at some cost in training loss"}  # fmt: skip
    files = plot(result, args.out)
    md = section(number=6, title="Overfitting and L2 regularisation" + (" (CoNLL-2003)" if args.conll else " (synthetic)"),
                 claim="A big model trained on a small training set overfits: the training loss keeps falling while "
                       "the dev loss reaches a minimum and turns up. L2 regularisation (lambda/2 (||W||^2 + ||U||^2) "
                       "added to J) holds the dev curve down -- smaller gap, later or lower minimum -- at the cost of a "
                       "higher training loss when lambda is too large.",
                 measured=_measured(result), verdict=verdict, why=_why(result), plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def _verdict(checks: dict) -> str:
    if checks["overfits_without_l2"] and checks["l2_holds_dev_down"] and checks["largest_lambda_highest_train_loss"]:
        return "supported"
    if checks["overfits_without_l2"] or checks["l2_holds_dev_down"]:
        return "partly supported"
    return "not supported"


def _measured(result) -> list:
    c, d = result["config"], result["data"]
    lines = [
        (f"Data: {d['source']}; the first {d['train_sentences']} training sentences ({d['train_windows']} windows), the "
        f"full dev split ({d['dev_windows']} windows), vocabulary {d['vocab_size']}. Model: window {c['window']}, H = "
        f"{c['hidden_dim']}, {c['activation']}, no dropout, no casing feature, E {c['embeddings_mode']}d; "
        f"{c['optimizer']} at a constant {c['learning_rate']:g}, batch {c['batch_size']}, {c['epochs']} epochs, seed {c['seed']}. "
        f"Losses are cross-entropies without the penalty, after each epoch, on the whole training subset and on dev.")
    ]  # fmt: skip
    for run in result["runs"]:
        s = run["summary"]
        lines.append(
            f"lambda = {s['l2']:g}: dev loss minimum {fmt(s['min_dev_loss'])} at epoch {s['min_dev_epoch']}/{s['epochs_run']}, "
            f"final {fmt(s['final_dev_loss'])} (+{fmt(100 * s['dev_rise_rel'], 2)}% above the minimum); final train loss "
            f"{fmt(s['final_train_loss'])}, train-dev gap {fmt(s['final_gap'])}; best dev F1 {s['best_dev_f1']:.3f} "
            f"(epoch {s['best_dev_f1_epoch']}), final {s['final_dev_f1']:.3f}; final ||W|| {fmt(s['final_w_norm'])}, "
            f"||U|| {fmt(s['final_u_norm'])}."
        )  # fmt: skip
    return lines


def _why(result) -> str:
    k, runs = result["checks"], [r["summary"] for r in result["runs"]]
    base = runs[0]
    parts = [
        (f"Without L2 the training loss falls to {fmt(base['final_train_loss'])} while the dev loss bottoms out at epoch "
         f"{base['min_dev_epoch']} and ends {fmt(100 * base['dev_rise_rel'], 2)}% higher: overfitting." if k["overfits_without_l2"]
         else f"Without L2 the dev loss did not turn up by more than {100 * RISE_THRESHOLD:g}% "
              f"(it ended {fmt(100 * base['dev_rise_rel'], 2)}% above its minimum): no clear overfitting at this size."),
        (f"lambda in {{{', '.join(f'{x:g}' for x in k['lambdas_that_help'])}}} ends with a lower dev loss and a smaller gap "
         "than lambda = 0." if k["l2_holds_dev_down"] else "No lambda ended with both a lower dev loss and a smaller gap than lambda = 0."),
        ("Every lambda > 0 shrinks ||W||." if k["l2_lowers_w_norm"] else "Not every lambda > 0 shrank ||W||."),
        (f"The largest lambda ({max(r['l2'] for r in runs):g}) pays with the highest training loss"
         + (" and a worse dev minimum than a smaller lambda: too much L2 underfits." if k["largest_lambda_not_best_dev"] else
            ", though its dev minimum is still the lowest.")
         if k["largest_lambda_highest_train_loss"] else "The training loss did not grow with lambda."),
    ]  # fmt: skip
    top = max(runs, key=lambda r: r["best_dev_f1"])
    parts.append(f"On dev F1 the differences are {'small' if top['best_dev_f1'] - base['best_dev_f1'] < 0.02 else 'clear'}: best "
                 f"{base['best_dev_f1']:.3f} at lambda = 0 against {top['best_dev_f1']:.3f} at lambda = {top['l2']:g}.")  # fmt: skip
    if base["best_dev_f1_epoch"] > base["min_dev_epoch"]:
        parts.append(f"At lambda = 0 the dev F1 still peaks at epoch {base['best_dev_f1_epoch']}, after the dev-loss minimum "
                     f"(epoch {base['min_dev_epoch']}), and ends at {base['final_dev_f1']:.3f}: the dev loss turns up before the "
                     "decisions get worse, so part of its rise is growing confidence in the mistakes.")  # fmt: skip
    return " ".join(parts)


if __name__ == "__main__":
    main(sys.argv[1:])
