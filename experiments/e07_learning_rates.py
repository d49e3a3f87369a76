"""E07: learning rates -- too large diverges, too small crawls; a decaying rate beats a constant one.

Claims of the lecture's "learning rates" slide: with plain SGD a rate that is too large makes
the loss blow up (or oscillate) and one that is too small makes it crawl; decaying the rate
("halve it every k epochs") does better than keeping it constant; cyclic rates are an
alternative. Two literal sweep tables run through :func:`jaxbackprop.sweep.run_sweep`:

1. ``rates``: plain SGD, constant rate, at powers of ten up to a rate that must diverge;
2. ``schedules``: plain SGD with every schedule of ``train.SCHEDULES`` (constant, step = halve
   every ``decay_epochs`` epochs, exponential, cosine, cyclic, warmup_cosine) at the *high* rate:
   the largest rate of table 1 that did not diverge (fast, but noisy -- where the lecture says a
   decay pays); plus constant vs step at the *tuned* rate, the one with the best final dev F1 in
   table 1, if that is another. Each row runs with several seeds (initialisation), so a
   difference can be told from noise.

Each sweep writes its own files (results.csv/json, curves.json/png, heatmap.png, config.json)
into ``sweep_rates/`` and ``sweep_schedules/`` of the output folder.

    python experiments/e07_learning_rates.py            # ~1.5 min: 500 synthetic sentences, 8 epochs, 7 rates + 8 x 5 seeds
    python experiments/e07_learning_rates.py --quick    # ~15 s (14 s of CPU; longer on a busy machine)
    python experiments/e07_learning_rates.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt     # ~7 min: full train, 5 epochs

Expected: the largest rate is marked diverged (its loss became NaN/inf) without stopping the
sweep; the smallest ends with a training loss far above the best rate's; at the high rate the
step schedule ends with a lower training loss and a higher dev F1 than the constant rate; at a
well-tuned rate the difference is small (or goes the other way). On CoNLL a rate can also fail
without a NaN: it stalls at a high loss, and then a warm-up or a cyclic start rescues it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, load_corpus, parse_args, prepare, section, write_results  # noqa: E402

from jaxbackprop import plots, sweep, train  # noqa: E402

NAME = "e07_learning_rates"
CRAWL_FACTOR = 3.0  # "crawls": the smallest rate ends with >= 3x the best rate's training loss
MIN_F1_GAIN = 0.005  # a gain counts when above max(2 standard errors over seeds, this) of final dev F1


@dataclasses.dataclass(frozen=True)
class Config:
    train_sentences: int | None = 500  # None: the whole training split
    rates: tuple = (1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0, 100.0)  # plain SGD, constant; the last must diverge
    schedules: tuple = train.SCHEDULES
    seeds: tuple = (0, 1, 2, 3, 4)  # initialisation seeds of the schedule rows (the data order is shared)
    decay_epochs: int = 2  # step: halve every 2 epochs; cyclic: period 4 epochs
    decay_rate: float = 0.5
    window: int = 5
    hidden_dim: int = 100
    batch_size: int = 64
    epochs: int = 8


QUICK = Config(train_sentences=100, rates=(1e-2, 1.0, 1e4), schedules=("constant", "step", "cyclic"), seeds=(0,),
               hidden_dim=16, batch_size=64, epochs=3, decay_epochs=1)  # fmt: skip
CONLL = Config(train_sentences=None, rates=(1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0), seeds=(0,), hidden_dim=200, batch_size=1024, epochs=5)
CONLL_QUICK = Config(train_sentences=300, rates=(1e-2, 1e4), schedules=("constant", "step"), seeds=(0,),
                     hidden_dim=16, batch_size=256, epochs=2, decay_epochs=1)  # fmt: skip


def base_config(cfg: Config) -> train.TrainConfig:
    """Every TrainConfig field pinned: plain SGD, no dropout, so the rate alone decides."""
    return train.TrainConfig(
        window=cfg.window, hidden_dim=cfg.hidden_dim, activation="relu", init="xavier", l2=0.0, dropout=0.0,
        input_dropout=0.0, word_dropout=0.0, casing_dim=0, embed_dim=50, optimizer="sgd", learning_rate=cfg.rates[0],
        schedule="constant", decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate, epochs=cfg.epochs,
        batch_size=cfg.batch_size, patience=0, seed=0, grad="manual", impl="pure", embeddings_mode="finetune",
        sparse=False, min_count=1, decode="argmax",  # the recorded results were decoded per token
    )  # fmt: skip


def rate_table(cfg: Config) -> list[dict]:
    """Sweep 1: plain SGD, constant schedule, one row per rate."""
    return [{"learning_rate": lr, "schedule": "constant"} for lr in cfg.rates]


def pick_rates(rates: list[dict]) -> tuple[float, float]:
    """(high, tuned): the largest rate that did not diverge, and the one with the best final dev F1."""
    alive = [r for r in rates if not r["diverged"]]
    if not alive:
        raise SystemExit(f"{NAME}: every rate of {[r['learning_rate'] for r in rates]} diverged; add smaller ones")
    return max(r["learning_rate"] for r in alive), max(alive, key=lambda r: r["final_dev_f1"])["learning_rate"]


def schedule_table(cfg: Config, high: float, tuned: float) -> list[dict]:
    """Sweep 2: every schedule at the high rate, constant and step at the tuned rate; once per seed."""
    table = [{"learning_rate": high, "schedule": s, "seed": seed} for s in cfg.schedules for seed in cfg.seeds]
    if tuned != high:
        table += [{"learning_rate": tuned, "schedule": s, "seed": seed} for s in ("constant", "step") for seed in cfg.seeds]
    return table


def run_table(table, prepared, base, out_dir: Path) -> list[dict]:
    """run_sweep, then each row's summary with its per-epoch curve (from the sweep's curves.json)."""
    rows = sweep.run_sweep(table, prepared, out_dir, base=base, log=lambda line: print(f"{NAME}: {line}"))
    curves = json.loads((out_dir / "curves.json").read_text())
    return [{**row, "curve": c["epochs"]} for row, c in zip(rows, curves)]


def rate_summary(row: dict) -> dict:
    c = row["curve"]
    return {"learning_rate": row["learning_rate"], "diverged": row["diverged"], "diverged_epoch": row["diverged_epoch"],
            "best_dev_f1": row["best_dev_f1"], "final_dev_f1": c[-1]["dev_f1"] if c and not row["diverged"] else None,
            "final_train_loss": row["final_train_loss"], "first_train_loss": c[0]["train_loss"] if c else None,
            "curve": c}  # fmt: skip


def schedule_summary(cfg: Config, rows: list[dict], steps_per_epoch: int) -> list[dict]:
    """Per (schedule, peak rate): mean and spread over seeds of final/best dev F1 and final training
    loss, the mean curves, and the schedule itself per step (for the plot)."""
    out = []
    for s, peak in dict.fromkeys((r["schedule"], r["learning_rate"]) for r in rows):
        mine = [r for r in rows if (r["schedule"], r["learning_rate"]) == (s, peak)]
        alive = [r for r in mine if not r["diverged"]]
        final_f1 = [r["curve"][-1]["dev_f1"] for r in alive]
        tcfg = dataclasses.replace(base_config(cfg), schedule=s, learning_rate=peak)
        lr = np.asarray(train.make_schedule(tcfg, steps_per_epoch)(np.arange(cfg.epochs * steps_per_epoch)), float)
        out.append({
            "schedule": s, "learning_rate": peak, "seeds": [r["seed"] for r in mine], "diverged": sum(r["diverged"] for r in mine),
            "final_dev_f1": final_f1, "best_dev_f1": [r["best_dev_f1"] for r in alive],
            "final_train_loss": [r["final_train_loss"] for r in alive],
            "mean_final_dev_f1": _mean(final_f1), "sd_final_dev_f1": _sd(final_f1),
            "mean_best_dev_f1": _mean([r["best_dev_f1"] for r in alive]),
            "mean_final_train_loss": _mean([r["final_train_loss"] for r in alive]),
            "mean_curve": _mean_curve([r["curve"] for r in alive]),
            "lr_per_step": np.broadcast_to(lr, (cfg.epochs * steps_per_epoch,))[:: max(1, steps_per_epoch // 20)],
            "lr_step_stride": max(1, steps_per_epoch // 20),
        })  # fmt: skip
    return out


def _mean(xs):
    return float(np.mean(xs)) if xs else None


def _sd(xs):
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def _mean_curve(curves: list) -> list[dict]:
    n = min((len(c) for c in curves), default=0)
    return [{"epoch": curves[0][i]["epoch"], **{k: float(np.mean([c[i][k] for c in curves])) for k in ("train_loss", "dev_loss", "dev_f1")}}
            for i in range(n)]  # fmt: skip


def judge(rates: list[dict], schedules: list[dict], high: float, tuned: float) -> dict:
    """Each part of the claim as a boolean, from the summaries."""
    alive = [r for r in rates if not r["diverged"]]
    best = min(alive, key=lambda r: r["final_train_loss"])
    smallest, largest = rates[0], rates[-1]
    at_high = {s["schedule"]: s for s in schedules if s["learning_rate"] == high}
    const = at_high.get("constant")
    decays = [s for s in at_high.values() if s["schedule"] in ("step", "exponential", "cosine", "warmup_cosine")]
    step_high, step_tuned = _step_vs_constant(schedules, high), _step_vs_constant(schedules, tuned)
    cyclic = at_high.get("cyclic")
    return {
        "largest_rate_diverged": bool(largest["diverged"]),
        "smallest_rate_crawls": bool(not smallest["diverged"] and smallest is not best
                                     and smallest["final_train_loss"] >= CRAWL_FACTOR * best["final_train_loss"]),
        "best_rate_by_train_loss": best["learning_rate"], "high_rate": high, "tuned_rate": tuned,
        # too large without NaN: above the tuned rate, alive, but far behind it on the training loss
        "stalled_large_rates": [r["learning_rate"] for r in alive if r["learning_rate"] > tuned
                                and r["final_train_loss"] >= CRAWL_FACTOR * _rate(rates, tuned)["final_train_loss"]],
        "step_vs_constant_at_high": step_high, "step_vs_constant_at_tuned": step_tuned,
        "step_beats_constant": bool(step_high and step_high["f1_gain"] > 0 and step_high["train_loss_ratio"] < 1),
        "step_gain_beyond_noise": bool(step_high and step_high["f1_gain"] > step_high["threshold"]),
        "step_worse_at_tuned": bool(tuned != high and step_tuned and step_tuned["f1_gain"] < -step_tuned["threshold"]),
        "decay_gains_over_constant": {s["schedule"]: s["mean_final_dev_f1"] - const["mean_final_dev_f1"] for s in decays
                                      if const and None not in (s["mean_final_dev_f1"], const["mean_final_dev_f1"])},
        "cyclic_vs_constant_final_f1": (cyclic["mean_final_dev_f1"] - const["mean_final_dev_f1"]
                                        if cyclic and const and None not in (cyclic["mean_final_dev_f1"], const["mean_final_dev_f1"]) else None),
    }  # fmt: skip


def _rate(rates: list[dict], lr: float) -> dict:
    return next(r for r in rates if r["learning_rate"] == lr)


def _step_vs_constant(schedules: list[dict], rate: float) -> dict | None:
    """Step minus constant at one peak rate: final dev F1 gain, the noise threshold it must clear
    (2 standard errors of the difference of two seed means, at least MIN_F1_GAIN), training-loss ratio."""
    by = {s["schedule"]: s for s in schedules if s["learning_rate"] == rate}
    const, step = by.get("constant"), by.get("step")
    if not (const and step) or None in (const["mean_final_dev_f1"], step["mean_final_dev_f1"]):
        return None
    se = math.sqrt(sum(x["sd_final_dev_f1"] ** 2 / len(x["final_dev_f1"]) for x in (const, step)))
    return {"rate": rate, "f1_gain": step["mean_final_dev_f1"] - const["mean_final_dev_f1"], "standard_error": se,
            "threshold": max(2 * se, MIN_F1_GAIN), "seeds": len(step["final_dev_f1"]),
            "train_loss_ratio": step["mean_final_train_loss"] / const["mean_final_train_loss"]}  # fmt: skip


def plot(result: dict, out: Path) -> list:
    rates, schedules = result["rates"], result["schedules"]
    fig, (ax_loss, ax_f1, ax_lr) = plt.subplots(1, 3, figsize=(16, 4.3))
    for r in rates:
        c = r["curve"]
        label = f"lr {r['learning_rate']:g}" + (f" (diverged, epoch {r['diverged_epoch']})" if r["diverged"] else "")
        (line,) = ax_loss.plot([e["epoch"] for e in c], [e["train_loss"] for e in c], "o-", ms=3, label=label)
        ax_f1.plot([e["epoch"] for e in c], [e["dev_f1"] for e in c], "o-", ms=3, color=line.get_color(), label=label)
        if r["diverged"]:
            ax_loss.axvline(r["diverged_epoch"], color=line.get_color(), ls=":", lw=1)
    ax_loss.set(xlabel="epoch", ylabel="mean training loss of the epoch", yscale="log", title="plain SGD, constant rate: training loss")
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title="dev entity F1")
    ok = [r for r in rates if not r["diverged"]]
    ax_lr.plot([r["learning_rate"] for r in ok], [r["best_dev_f1"] for r in ok], "o-", label="best dev F1")
    ax_lr.plot([r["learning_rate"] for r in ok], [r["final_dev_f1"] for r in ok], "s--", label="final dev F1")
    for r in rates:
        if r["diverged"]:
            ax_lr.plot([r["learning_rate"]], [0], "x", color="tab:red", ms=12, mew=2)
    ax_lr.plot([], [], "x", color="tab:red", ms=10, mew=2, label="diverged")
    ax_tl = ax_lr.twinx()
    ax_tl.plot([r["learning_rate"] for r in ok], [r["final_train_loss"] for r in ok], "^:", color="0.4", label="final train loss")
    ax_tl.set(yscale="log", ylabel="final training loss")
    ax_lr.set(xscale="log", xlabel="learning rate", ylabel="entity F1", title="dev F1 and training loss against the rate", ylim=(-0.03, 1.03))
    ax_lr.legend(loc="lower left", fontsize=8)
    ax_tl.legend(loc="lower right", fontsize=8)
    for ax in (ax_loss, ax_f1, ax_lr):
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    plots.save(fig, out / "learning_rates.png")

    fig, (ax_s, ax_loss, ax_f1) = plt.subplots(1, 3, figsize=(16, 4.3))
    high = result["checks"]["high_rate"]
    for s in schedules:
        steps = np.arange(len(s["lr_per_step"])) * s["lr_step_stride"] / result["data"]["steps_per_epoch"]
        style, label = ("o-", "-") if s["learning_rate"] == high else ("s--", "--"), f"{s['schedule']}, lr {s['learning_rate']:g}"
        (line,) = ax_s.plot(steps, s["lr_per_step"], style[1], label=label)
        c = s["mean_curve"]
        ax_loss.plot([e["epoch"] for e in c], [e["train_loss"] for e in c], style[0], ms=3, color=line.get_color(), label=label)
        ax_f1.plot([e["epoch"] for e in c], [e["dev_f1"] for e in c], style[0], ms=3, color=line.get_color(), label=label)
    n = len(result["config"]["seeds"])
    ax_s.set(xlabel="epoch", ylabel="learning rate", title=f"schedules (solid: the high rate {high:g})")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss of the epoch", yscale="log", title=f"training loss (mean of {n} seed{'s' * (n > 1)})")
    ax_f1.set(xlabel="epoch", ylabel="entity F1", title=f"dev entity F1 (mean of {n} seed{'s' * (n > 1)})")
    for ax in (ax_s, ax_loss, ax_f1):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    plots.save(fig, out / "schedules.png")
    return ["learning_rates.png", "schedules.png"]


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    cfg = (CONLL_QUICK if args.quick else CONLL) if args.conll else (QUICK if args.quick else Config())
    corpus = load_corpus(args)
    base = base_config(cfg)
    train_sents = corpus.train if cfg.train_sentences is None else corpus.train[: cfg.train_sentences]
    prepared = prepare(corpus, base, train_sents)
    steps = math.ceil(len(prepared.train.windows) / cfg.batch_size)
    data = {"source": corpus.source, "train_sentences": len(train_sents), "train_windows": len(prepared.train.windows),
            "dev_windows": len(prepared.dev.windows), "vocab_size": len(prepared.vocab), "steps_per_epoch": steps}  # fmt: skip
    rates = [rate_summary(r) for r in run_table(rate_table(cfg), prepared, base, args.out / "sweep_rates")]
    high, tuned = pick_rates(rates)
    schedules = schedule_summary(cfg, run_table(schedule_table(cfg, high, tuned), prepared, base, args.out / "sweep_schedules"), steps)
    checks = judge(rates, schedules, high, tuned)
    verdict = _verdict(checks)
    result = {"name": NAME, "config": dataclasses.asdict(cfg), "base": dataclasses.asdict(base), "data": data,
              "tables": {"rates": rate_table(cfg), "schedules": schedule_table(cfg, high, tuned)},
              "rates": rates, "schedules": schedules, "checks": checks, "verdict": verdict,
              "claim": "too large a rate diverges, too small crawls; a decaying rate beats a constant one; cyclic is an alternative"}  # fmt: skip
    files = plot(result, args.out)
    md = section(number=7, title="Learning rates and schedules" + (" (CoNLL-2003)" if args.conll else " (synthetic)"),
                 claim="A learning rate that is too large diverges (or oscillates), one that is too small crawls; decaying "
                       "the rate (e.g. halve it every k epochs) beats a constant rate; cyclic rates are an alternative.",
                 measured=_measured(result), verdict=verdict, why=_why(result), plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def _verdict(k: dict) -> str:
    parts = [k["largest_rate_diverged"], k["smallest_rate_crawls"], k["step_beats_constant"]]
    if all(parts) and k["step_gain_beyond_noise"] and not k["step_worse_at_tuned"]:
        return "supported"
    return "partly supported" if any(parts) else "not supported"


def _measured(result) -> list:
    c, d, b = result["config"], result["data"], result["base"]
    lines = [
        (f"Data: {d['source']}; {d['train_sentences']} training sentences ({d['train_windows']} windows, "
        f"{d['steps_per_epoch']} steps per epoch), dev {d['dev_windows']} windows. Model: window {b['window']}, H = "
        f"{b['hidden_dim']}, relu, no dropout, no casing, E fine-tuned; plain SGD (optax.sgd, no momentum), batch "
        f"{b['batch_size']}, {b['epochs']} epochs; sweeps by `jaxbackprop.sweep.run_sweep` (files in sweep_rates/, sweep_schedules/).")
    ]  # fmt: skip
    for r in result["rates"]:
        if r["diverged"]:
            lines.append(f"lr {r['learning_rate']:g}: **diverged** in epoch {r['diverged_epoch']} (loss NaN/inf; marked, the sweep went on).")
        else:
            lines.append(f"lr {r['learning_rate']:g}: training loss {fmt(r['first_train_loss'])} (epoch 1) -> "
                         f"{fmt(r['final_train_loss'])} (epoch {len(r['curve'])}); dev F1 final {r['final_dev_f1']:.3f}, best {r['best_dev_f1']:.3f}.")  # fmt: skip
    seeds = len(c["seeds"])
    for s in result["schedules"]:
        spread = f" ± {s['sd_final_dev_f1']:.3f} (sd over {seeds} seeds)" if seeds > 1 else ""
        if s["mean_final_dev_f1"] is None:
            lines.append(f"{s['schedule']} at lr {s['learning_rate']:g}: every seed diverged.")
            continue
        lines.append(f"{s['schedule']} at peak lr {s['learning_rate']:g}: final dev F1 {s['mean_final_dev_f1']:.4f}{spread}, best "
                     f"{s['mean_best_dev_f1']:.4f}, final training loss {fmt(s['mean_final_train_loss'])}"
                     + (f"; {s['diverged']} seed(s) diverged" if s["diverged"] else "") + ".")  # fmt: skip
    return lines


def _why(result) -> str:
    k, rates = result["checks"], result["rates"]
    smallest, largest = rates[0], rates[-1]
    best = next((r for r in rates if r["learning_rate"] == k["best_rate_by_train_loss"]), None)
    diverged = ", ".join(f"{r['learning_rate']:g}" for r in rates if r["diverged"])
    parts = [
        (f"lr {diverged} diverged (the loss became NaN/inf; marked, the sweep went on)." if k["largest_rate_diverged"]
         else f"Even lr {largest['learning_rate']:g} did not diverge."),
        (f"lr {smallest['learning_rate']:g} crawls: its final training loss {fmt(smallest['final_train_loss'])} is "
         f"{fmt(smallest['final_train_loss'] / best['final_train_loss'], 2)}x that of lr {best['learning_rate']:g}."
         if k["smallest_rate_crawls"] else f"lr {smallest['learning_rate']:g} did not end >= {CRAWL_FACTOR:g}x above the best rate's training loss."),
    ]  # fmt: skip
    for lr in k["stalled_large_rates"]:
        r = _rate(rates, lr)
        parts.append(f"lr {lr:g} did not blow up but stalled: final training loss {fmt(r['final_train_loss'])}, "
                     f"{fmt(r['final_train_loss'] / _rate(rates, k['tuned_rate'])['final_train_loss'], 2)}x that of lr "
                     f"{k['tuned_rate']:g}, best dev F1 {r['best_dev_f1']:.3f} -- too large without a NaN.")  # fmt: skip
    parts.append(f"Schedules ran at the high rate {k['high_rate']:g} (the largest that did not diverge)"
                 + (f" and, constant vs step, at the tuned rate {k['tuned_rate']:g} (best final dev F1 at a constant rate)."
                    if k["tuned_rate"] != k["high_rate"] else ", which is also the rate with the best final dev F1."))  # fmt: skip
    for name, cmp in (("high", k["step_vs_constant_at_high"]), ("tuned", k["step_vs_constant_at_tuned"])):
        if cmp is None or (name == "tuned" and k["tuned_rate"] == k["high_rate"]):
            continue
        parts.append(
            f"At the {name} rate {cmp['rate']:g}, halving every {result['config']['decay_epochs']} epochs changes the final dev F1 by "
            f"{cmp['f1_gain']:+.4f} ({'more' if abs(cmp['f1_gain']) > cmp['threshold'] else 'less'} than the noise threshold "
            f"{cmp['threshold']:.4f} = " + (f"max(2 standard errors over {cmp['seeds']} seeds, {MIN_F1_GAIN})" if cmp["seeds"] > 1
                                              else f"the floor {MIN_F1_GAIN}; one seed, no spread measured") + ") and the final training "
            f"loss by a factor {cmp['train_loss_ratio']:.2f}."
        )  # fmt: skip
    if k["step_worse_at_tuned"]:
        parts.append("So decay pays where the constant rate is too high, but at the well-tuned constant rate the step "
                     "schedule did worse, beyond the noise threshold: the claim holds only for the high rate.")  # fmt: skip
    if k["decay_gains_over_constant"]:
        gains = ", ".join(f"{name} {gain:+.4f}" for name, gain in k["decay_gains_over_constant"].items())
        parts.append(f"Every decay against constant at the high rate, final dev F1: {gains}.")
    if k["cyclic_vs_constant_final_f1"] is not None:
        parts.append(f"Cyclic vs constant: {k['cyclic_vs_constant_final_f1']:+.4f} final dev F1.")
    return " ".join(parts)


if __name__ == "__main__":
    main(sys.argv[1:])
