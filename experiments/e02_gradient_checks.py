"""E02: numeric gradients -- how accurate (one- vs two-sided differences) and how slow (vs backprop).

Claims of the lecture's "gradient checking" slide:
(a) the two-sided difference (f(t+h) - f(t-h)) / 2h with a small h (~1e-4) approximates the
    gradient well -- better than the one-sided (f(t+h) - f(t)) / h: truncation error O(h^2)
    against O(h), until round-off (~eps/h) takes over as h shrinks;
(b) it is "very slow": f is recomputed for every parameter (2P forward passes), while backprop
    costs a small constant times one forward pass.

    python experiments/e02_gradient_checks.py            # ~1 min on 2 busy CPU cores
    python experiments/e02_gradient_checks.py --quick    # ~15 s

Expected: truncation slopes ~1 (one-sided) and ~2 (two-sided); lowest error near h ~ 1e-8
(one-sided) and h ~ 1e-5 (two-sided); backprop / forward a small constant for every size;
numeric / backprop growing in proportion to the parameter count P.
All numbers are float64 (float32 central differences are too coarse to check anything).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, loglog_slope, parse_args, section, time_round_robin, write_results  # noqa: E402

from jaxbackprop import backprop, gradcheck, model, plots  # noqa: E402

NAME = "e02_gradient_checks"
EPS64 = float(np.finfo(np.float64).eps)


@dataclasses.dataclass(frozen=True)
class Config:
    # (a) accuracy: a small tanh model (smooth, so the Taylor argument holds everywhere)
    vocab_size: int = 50
    embed_dim: int = 8
    hidden_dim: int = 20
    batch_size: int = 16
    coords_per_tensor: int = 4  # coordinates of W and of E (E: rows that occur in the batch)
    h_per_decade: int = 4  # h runs from 1e-1 down to 1e-12
    # (b) cost: the parameter count P grows with the vocabulary; d, H small so 2P passes are feasible
    vocab_sizes: tuple = (50, 200, 800, 3200)
    cost_embed_dim: int = 10
    cost_hidden_dim: int = 50
    cost_batch_size: int = 64
    loop_batches: int = 16  # forward/backprop timed as a jitted loop over this many batches (no dispatch)
    step: float = 1e-5  # h of the full numeric gradient (the checker's default)
    repeats: int = 7  # median over repeats (round-robin over the variants)
    numeric_repeats: int = 3
    seed: int = 0


QUICK = Config(coords_per_tensor=2, h_per_decade=1, vocab_sizes=(20,), cost_batch_size=16, loop_batches=4,
               repeats=3, numeric_repeats=1)  # fmt: skip


# ----------------------------------------------------------------------------- (a) accuracy


def _batch(rng, cfg: model.ModelConfig, batch_size):
    return {"windows": rng.integers(0, cfg.vocab_size, (batch_size, cfg.window), dtype=np.int32),
            "labels": rng.integers(0, cfg.num_classes, batch_size, dtype=np.int32)}  # fmt: skip


def _pick_coordinates(rng, grads, name, k, rows=None):
    """k coordinates of ``grads[name]`` whose |gradient| is above the tensor's median (so a
    relative error means something), restricted to ``rows`` of it when given."""
    g = np.abs(np.asarray(grads[name]))
    allowed = np.zeros(g.shape, bool)
    if rows is None:
        allowed[...] = True
    else:
        allowed[rows] = True
    candidates = np.argwhere(allowed & (g >= np.median(g[allowed])) & (g > 0))
    picked = candidates[rng.choice(len(candidates), size=k, replace=False)]
    return [(name, tuple(int(i) for i in idx)) for idx in picked]


def _flat_index(params, name, index):
    """Position of params[name][index] in ravel_pytree(params)."""
    marker = {k: np.zeros(v.shape) for k, v in params.items()}
    marker[name][index] = 1.0
    return int(np.argmax(np.asarray(ravel_pytree(marker)[0])))


@functools.partial(jax.jit, static_argnames=("cfg",))
def _losses(thetas, unravel_template, batch, cfg):
    """J at every row of ``thetas``, one after another with the same program (lax.map)."""
    _, unravel = ravel_pytree(unravel_template)
    return jax.lax.map(lambda t: model.loss(unravel(t), batch, cfg), thetas)


def difference_errors(cfg: Config) -> dict:
    """Relative error of one- and two-sided differences against the hand-derived gradient."""
    mcfg = model.ModelConfig(vocab_size=cfg.vocab_size, embed_dim=cfg.embed_dim, window=5,
                             hidden_dim=cfg.hidden_dim, num_classes=5, activation="tanh")  # fmt: skip
    rng = np.random.default_rng(cfg.seed)
    params = gradcheck.check_params(cfg.seed, mcfg)  # float64, gradients O(0.01 .. 1)
    batch = _batch(rng, mcfg, cfg.batch_size)
    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        _, grads = jax.jit(backprop.manual_value_and_grad, static_argnames="cfg")(p64, batch, mcfg)
        grads = jax.device_get(grads)
        coords = _pick_coordinates(rng, grads, "W", cfg.coords_per_tensor)
        coords += _pick_coordinates(rng, grads, "E", cfg.coords_per_tensor, rows=np.unique(batch["windows"]))
        hs = np.logspace(-1, -12, 11 * cfg.h_per_decade + 1)
        theta = np.asarray(ravel_pytree(p64)[0])
        flat = [_flat_index(params, name, idx) for name, idx in coords]
        thetas = [theta]
        for i in flat:  # theta + h e_i for every h, then theta - h e_i for every h
            for sign in (1.0, -1.0):
                for h in hs:
                    t = theta.copy()
                    t[i] = theta[i] + sign * h
                    thetas.append(t)
        J = np.asarray(_losses(jnp.asarray(np.stack(thetas)), p64, batch, mcfg))
    f0, J = J[0], J[1:].reshape(len(flat), 2, len(hs))
    exact = np.array([grads[name][idx] for name, idx in coords])
    one = (J[:, 0] - f0) / hs
    two = (J[:, 0] - J[:, 1]) / (2 * hs)
    rel_one = np.abs(one - exact[:, None]) / np.abs(exact[:, None])
    rel_two = np.abs(two - exact[:, None]) / np.abs(exact[:, None])
    out = {"model": dataclasses.asdict(mcfg), "loss": float(f0), "h": hs,
           "coordinates": [{"tensor": n, "index": list(i), "grad": float(g)} for (n, i), g in zip(coords, exact)]}  # fmt: skip
    for label, rel, theory in (("one_sided", rel_one, EPS64**0.5), ("two_sided", rel_two, EPS64 ** (1 / 3))):
        out[label] = {"rel_error": rel, "median_rel_error": np.median(rel, axis=0), **_fit(hs, rel), "h_opt_theory": theory}
    return out


def _fit(hs, rel) -> dict:
    """Slopes of log(error) vs log(h): truncation region h in [10 h_opt, 1e-2], round-off h <= h_opt / 10."""
    med = np.median(rel, axis=0)
    h_opt = float(hs[int(np.argmin(med))])
    trunc = (hs >= 10 * h_opt * (1 - 1e-9)) & (hs <= 1e-2 * (1 + 1e-9))
    rnd = (hs <= h_opt / 10 * (1 + 1e-9)) & (med > 0)
    per_coord = [loglog_slope(hs[trunc], r[trunc]) for r in rel] if trunc.sum() >= 2 else []
    return {
        "h_opt": h_opt, "min_median_rel_error": float(med.min()),
        "truncation_range": [float(hs[trunc].min()), float(hs[trunc].max())] if trunc.any() else None,
        "truncation_slope": loglog_slope(hs[trunc], med[trunc]) if trunc.sum() >= 2 else float("nan"),
        "truncation_slope_per_coordinate": per_coord,
        "roundoff_slope": loglog_slope(hs[rnd], med[rnd]) if rnd.sum() >= 2 else float("nan"),
        "rel_error_at_1e-4": float(np.interp(-4, np.log10(hs[::-1]), med[::-1])),
    }  # fmt: skip


# ----------------------------------------------------------------------------- (b) cost


@functools.partial(jax.jit, static_argnames=("cfg", "step"))
def numeric_gradient(params, batch, cfg, step):
    """The full central-difference gradient: 2 forward passes per parameter, 2P in all.

    One jitted loop over the P coordinates of the flattened parameters; each coordinate is set
    to theta_i + h, then theta_i - h, then back to theta_i exactly, in place (no O(P) copy per
    pass), so the loop costs 2P forward passes and little else.
    """
    theta0, unravel = ravel_pytree(params)
    J = lambda t: model.loss(unravel(t), batch, cfg)  # noqa: E731

    def body(i, carry):
        theta, g = carry
        t = theta0[i]
        theta = theta.at[i].set(t + step)
        up = J(theta)
        theta = theta.at[i].set(t - step)
        down = J(theta)
        return theta.at[i].set(t), g.at[i].set((up - down) / (2 * step))

    _, g = jax.lax.fori_loop(0, theta0.shape[0], body, (theta0, jnp.zeros_like(theta0)))
    return unravel(g)


@functools.partial(jax.jit, static_argnames=("cfg",))
def forward_loop(params, windows, labels, cfg):
    """Sum of J over K batches (K, B, n) in one jitted loop: forward cost without dispatch."""
    body = lambda i, acc: acc + model.loss(params, {"windows": windows[i], "labels": labels[i]}, cfg)  # noqa: E731
    return jax.lax.fori_loop(0, windows.shape[0], body, jnp.zeros((), params["W"].dtype))


@functools.partial(jax.jit, static_argnames=("cfg",))
def backprop_loop(params, windows, labels, cfg):
    """Hand-derived (J, dense dJ/dparams) for K batches in one jitted loop, gradients summed."""

    def body(i, acc):
        J, g = backprop.manual_value_and_grad(params, {"windows": windows[i], "labels": labels[i]}, cfg)
        return acc[0] + J, jax.tree.map(jnp.add, acc[1], g)

    zeros = (jnp.zeros((), params["W"].dtype), jax.tree.map(jnp.zeros_like, params))
    return jax.lax.fori_loop(0, windows.shape[0], body, zeros)


@functools.partial(jax.jit, static_argnames=("cfg",))
def backprop_rows_loop(params, windows, labels, cfg):
    """As :func:`backprop_loop`, but E's gradient stays as rows (no dense (V, d) table)."""

    def body(i, acc):
        J, g, (_, rows) = backprop.manual_value_and_row_grads(params, {"windows": windows[i], "labels": labels[i]}, cfg)
        return acc[0] + J, jax.tree.map(jnp.add, acc[1], g), acc[2] + rows

    B, n = windows.shape[1], windows.shape[2]
    dense = {k: jnp.zeros_like(v) for k, v in params.items() if k != "E"}
    zeros = (jnp.zeros((), params["W"].dtype), dense, jnp.zeros((B * n, cfg.embed_dim), params["E"].dtype))
    return jax.lax.fori_loop(0, windows.shape[0], body, zeros)


def _block(fn):
    return lambda: jax.block_until_ready(fn())


def _setup(V: int, cfg: Config) -> dict:
    """Model, batches and the blocking timed functions at vocabulary V (call under enable_x64)."""
    mcfg = model.ModelConfig(vocab_size=V, embed_dim=cfg.cost_embed_dim, window=5, hidden_dim=cfg.cost_hidden_dim,
                             num_classes=5, activation="tanh")  # fmt: skip
    rng = np.random.default_rng(cfg.seed + V)
    K, B = cfg.loop_batches, cfg.cost_batch_size
    windows = jnp.asarray(rng.integers(0, V, (K, B, 5)), jnp.int32)
    labels = jnp.asarray(rng.integers(0, 5, (K, B)), jnp.int32)
    batch = {"windows": windows[0], "labels": labels[0]}
    params = {k: jnp.asarray(v, jnp.float64) for k, v in gradcheck.check_params(cfg.seed, mcfg).items()}
    fwd = jax.jit(model.loss, static_argnames="cfg").lower(params, batch, mcfg).compile()
    vag = jax.jit(backprop.manual_value_and_grad, static_argnames="cfg").lower(params, batch, mcfg).compile()
    loops = {name: fn.lower(params, windows, labels, mcfg).compile()
             for name, fn in (("forward_loop", forward_loop), ("backprop_loop", backprop_loop), ("backprop_rows_loop", backprop_rows_loop))}  # fmt: skip
    numeric = numeric_gradient.lower(params, batch, mcfg, cfg.step).compile()
    fast = {"forward_call": _block(lambda: fwd(params, batch)), "backprop_call": _block(lambda: vag(params, batch))}
    fast.update({name: _block(lambda c=c: c(params, windows, labels)) for name, c in loops.items()})
    num = jax.device_get(numeric(params, batch))
    exact = jax.device_get(vag(params, batch)[1])
    # max |numeric - exact| over each tensor, relative to that tensor's largest gradient entry
    worst = max(float(np.max(np.abs(num[k] - exact[k])) / np.max(np.abs(exact[k]))) for k in params)
    return {"V": V, "P": int(sum(v.size for v in params.values())), "fast": fast,
            "numeric": _block(lambda: numeric(params, batch)), "numeric_vs_manual_rel": worst}  # fmt: skip


def cost_table(cfg: Config) -> list:
    """Seconds of a forward pass, a backprop pass and a full numeric gradient at each vocabulary size.

    All sizes are timed round-robin in one loop, so load from other processes on a shared
    machine lands on every size alike; the numbers are medians over the repeats.
    """
    with jax.enable_x64(True):
        setups = [_setup(V, cfg) for V in cfg.vocab_sizes]
        fast = time_round_robin({(s["V"], k): fn for s in setups for k, fn in s["fast"].items()}, repeats=cfg.repeats)
        slow = time_round_robin({(s["V"], "numeric"): s["numeric"] for s in setups},
                                repeats=cfg.numeric_repeats, min_time=0, warmup=1)  # fmt: skip
    timing = {**fast, **slow}
    rows = []
    for st in setups:
        V, P = st["V"], st["P"]
        t = {k: v for (v_, k), v in timing.items() if v_ == V}
        s = {k: v["median_s"] for k, v in t.items()}
        for k in ("forward_loop", "backprop_loop", "backprop_rows_loop"):
            s[k] /= cfg.loop_batches  # per pass
        rows.append({
            "V": V, "P": P, "seconds": s, "timing": t,
            "backprop_over_forward_loop": s["backprop_loop"] / s["forward_loop"],
            "backprop_rows_over_forward_loop": s["backprop_rows_loop"] / s["forward_loop"],
            "backprop_over_forward_call": s["backprop_call"] / s["forward_call"],
            "numeric_over_backprop": s["numeric"] / s["backprop_loop"],
            "numeric_over_backprop_call": s["numeric"] / s["backprop_call"],
            "numeric_forward_passes": 2 * P,
            "numeric_per_pass_over_forward_loop": s["numeric"] / (2 * P) / s["forward_loop"],
            "numeric_vs_manual_rel": st["numeric_vs_manual_rel"],
        })  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- plots


def plot(result: dict, out: Path) -> list:
    a, rows = result["accuracy"], result["cost"]
    hs = np.asarray(a["h"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, color in (("one_sided", "tab:blue"), ("two_sided", "tab:orange")):
        r = a[label]
        for curve in r["rel_error"]:
            ax.loglog(hs, curve, color=color, alpha=0.15, lw=0.8)
        ax.loglog(hs, r["median_rel_error"], "o-", ms=3, color=color,
                  label=f"{label.replace('_', '-')}: slope {r['truncation_slope']:.2f}, min at h={r['h_opt']:.1e}")  # fmt: skip
    ax.loglog(hs, EPS64 / hs, "k:", lw=1, label="eps / h (round-off scale)")
    ax.set(xlabel="h", ylabel="relative error vs hand-derived gradient", ylim=(1e-13, 10),
           title="finite differences on the window model (float64)")  # fmt: skip
    ax.invert_xaxis()
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    plots.save(fig, out / "difference_error.png")

    P = [r["P"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("forward_loop", "forward pass"), ("backprop_loop", "backprop (dense dJ/dE)"),
                       ("backprop_rows_loop", "backprop (dJ/dE as rows)"), ("numeric", "full numeric gradient (2P passes)")):  # fmt: skip
        ax1.loglog(P, [r["seconds"][key] for r in rows], "o-", label=label)
    ax1.loglog(P, [2 * r["P"] * r["seconds"]["forward_loop"] for r in rows], "k:", label="2P × forward pass")
    ax1.set(xlabel="parameters P", ylabel="seconds (median)", title="cost of one gradient")
    ax2.loglog(P, [r["numeric_over_backprop"] for r in rows], "o-", label="numeric / backprop")
    ax2.loglog(P, [r["backprop_over_forward_loop"] for r in rows], "s-", label="backprop / forward")
    ax2.loglog(P, [r["backprop_rows_over_forward_loop"] for r in rows], "^-", label="backprop (rows) / forward")
    ax2.set(xlabel="parameters P", ylabel="ratio", title="ratios")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_xticks(P, [str(p) for p in P], fontsize=8)
        ax.minorticks_off()
    plots.save(fig, out / "cost.png")
    return ["difference_error.png", "cost.png"]


# ----------------------------------------------------------------------------- main


def judge(result: dict):
    a, rows = result["accuracy"], result["cost"]
    s1, s2 = a["one_sided"]["truncation_slope"], a["two_sided"]["truncation_slope"]
    accuracy_ok = abs(s1 - 1) <= 0.25 and abs(s2 - 2) <= 0.35 and a["two_sided"]["min_median_rel_error"] < a["one_sided"]["min_median_rel_error"]
    bp_ratios = [r["backprop_over_forward_loop"] for r in rows]
    growth = result["numeric_over_backprop_slope"]
    cost_ok = max(bp_ratios) <= 5 and 0.7 <= growth <= 1.3
    verdict = "supported" if accuracy_ok and cost_ok else ("partly supported" if accuracy_ok or cost_ok else "not supported")
    return verdict, accuracy_ok, cost_ok


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv)
    cfg = QUICK if args.quick else Config()
    accuracy = difference_errors(cfg)
    print(f"{NAME}: (a) slopes one-sided {accuracy['one_sided']['truncation_slope']:.2f}, "
          f"two-sided {accuracy['two_sided']['truncation_slope']:.2f}", flush=True)  # fmt: skip
    cost = cost_table(cfg)
    for r in cost:
        print(f"  V={r['V']} P={r['P']}: forward {r['seconds']['forward_loop'] * 1e6:.0f} us, backprop x{r['backprop_over_forward_loop']:.2f}, "
              f"numeric {r['seconds']['numeric']:.3g} s = x{r['numeric_over_backprop_call']:.0f} backprop", flush=True)  # fmt: skip
    result = {"name": NAME, "config": dataclasses.asdict(cfg), "accuracy": accuracy, "cost": cost,
              "numeric_over_backprop_slope": loglog_slope([r["P"] for r in cost], [r["numeric_over_backprop"] for r in cost])
              if len(cost) > 1 else float("nan"),
              "claim": "two-sided differences beat one-sided (O(h^2) vs O(h)) and are accurate at h~1e-4; "
                       "a numeric gradient costs 2P forward passes, backprop a small constant times one"}  # fmt: skip
    verdict, accuracy_ok, cost_ok = judge(result)
    result["verdict"] = verdict
    files = plot(result, args.out)
    md = section(number=2, title="Numeric gradients: one- vs two-sided, and their cost",
                 claim="The two-sided difference (f(θ+h) − f(θ−h))/2h with small h (≈1e-4) approximates the "
                       "gradient well, better than the one-sided (f(θ+h) − f(θ))/h; but it is very slow, because f "
                       "is recomputed for every parameter, while backprop costs about as much as a forward pass.",
                 measured=_measured(result), verdict=verdict, why=_why(result, accuracy_ok, cost_ok),
                 plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def _measured(result) -> list:
    a, rows = result["accuracy"], result["cost"]
    o, t = a["one_sided"], a["two_sided"]
    n_w = sum(c["tensor"] == "W" for c in a["coordinates"])
    first, last = rows[0], rows[-1]
    return [
        f"(a) {n_w} coordinates of W and {len(a['coordinates']) - n_w} of E (rows in the batch) of a tanh window "
        f"model (V={a['model']['vocab_size']}, d={a['model']['embed_dim']}, H={a['model']['hidden_dim']}), float64, "
        f"h from 1e-1 to 1e-12; median relative error over the coordinates against the hand-derived gradient.",
        f"Truncation slope (log error vs log h, fitted on h in [{fmt(o['truncation_range'][0])}, {fmt(o['truncation_range'][1])}] "
        f"and [{fmt(t['truncation_range'][0])}, {fmt(t['truncation_range'][1])}]): one-sided {o['truncation_slope']:.2f}, "
        f"two-sided {t['truncation_slope']:.2f} (theory 1 and 2).",
        f"Round-off takes over below h = {fmt(o['h_opt'])} (one-sided, min error {fmt(o['min_median_rel_error'])}; "
        f"theory sqrt(eps) = {fmt(o['h_opt_theory'])}) and h = {fmt(t['h_opt'])} (two-sided, min error "
        f"{fmt(t['min_median_rel_error'])}; theory eps^(1/3) = {fmt(t['h_opt_theory'])}); below that the error grows "
        f"with slope {o['roundoff_slope']:.2f} / {t['roundoff_slope']:.2f} (theory −1).",
        f"At the lecture's h = 1e-4: relative error {fmt(o['rel_error_at_1e-4'])} one-sided, {fmt(t['rel_error_at_1e-4'])} two-sided.",
        f"(b) Window model with d={result['config']['cost_embed_dim']}, H={result['config']['cost_hidden_dim']}, "
        f"B={result['config']['cost_batch_size']} windows, float64, P from {first['P']} to {last['P']} (V = "
        f"{_join(rows, lambda r: str(r['V']))}). Per pass inside a jitted loop: forward "
        f"{_join(rows, lambda r: fmt(r['seconds']['forward_loop'] * 1e6))} µs; backprop / forward = "
        f"{_nums(rows, 'backprop_over_forward_loop', '.2f')} (dense dJ/dE), "
        f"{_nums(rows, 'backprop_rows_over_forward_loop', '.2f')} (dJ/dE as rows); "
        f"as single jitted calls from Python: {_nums(rows, 'backprop_over_forward_call', '.2f')}.",
        f"Full numeric gradient (2P forward passes in one jitted loop, measured directly at every size): "
        f"{_join(rows, lambda r: fmt(r['seconds']['numeric']))} s = "
        f"{_nums(rows, 'numeric_over_backprop', '.0f')} × one backprop pass (loop) or "
        f"{_nums(rows, 'numeric_over_backprop_call', '.0f')} × one jitted backprop call from Python; "
        + (f"it grows as P^{result['numeric_over_backprop_slope']:.2f}. " if len(rows) > 1 else "")
        + "One numeric pass costs "
        f"{_nums(rows, 'numeric_per_pass_over_forward_loop', '.2f')} × a forward pass of the forward loop "
        f"(the numeric loop is 2P forward passes and little else); numeric vs hand-derived gradient: max |difference| / max |gradient| per tensor = "
        f"{fmt(max(r['numeric_vs_manual_rel'] for r in rows))}.",
    ]  # fmt: skip


def _join(rows, text) -> str:
    return ", ".join(text(r) for r in rows)


def _nums(rows, key, spec) -> str:
    return ", ".join(format(r[key], spec) for r in rows)


def _why(result, accuracy_ok, cost_ok) -> str:
    a, rows = result["accuracy"], result["cost"]
    parts = [
        ("Two-sided differences converge as h^2, one-sided as h, and the two-sided error is much "
         f"smaller (best {fmt(a['two_sided']['min_median_rel_error'])} vs {fmt(a['one_sided']['min_median_rel_error'])}); "
         f"the lecture's h ≈ 1e-4 lies on the truncation side of the measured optimum ({fmt(a['two_sided']['h_opt'])}) "
         f"and is already accurate to {fmt(a['two_sided']['rel_error_at_1e-4'])}. Shrinking h further does not keep "
         "helping: below the optimum round-off error grows as 1/h."
         if accuracy_ok else "The slopes or optima differ from the O(h)/O(h^2) picture: see result.json."),
        (f"Backprop stays within {min(r['backprop_over_forward_loop'] for r in rows):.1f}–"
         f"{max(r['backprop_over_forward_loop'] for r in rows):.1f}× a forward pass while the numeric gradient's "
         f"cost grows with P (≈ P^{result['numeric_over_backprop_slope']:.2f} relative to backprop)."
         if cost_ok else "The cost ratios do not follow 'backprop ≈ constant × forward, numeric ∝ P'"
         + (" (one size only: --quick measures no growth)." if len(rows) < 2 else ": see result.json.")),
    ]  # fmt: skip
    if cost_ok and any(r["backprop_over_forward_loop"] > 1.5 * r["backprop_rows_over_forward_loop"] for r in rows):
        parts.append("The dense dJ/dE (a V×d table, mostly zeros) makes backprop grow with V while the forward "
                     "pass does not; keeping E's gradient as rows removes that.")
    return " ".join(parts)


if __name__ == "__main__":
    main(sys.argv[1:])
