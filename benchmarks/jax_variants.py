"""The JAX variants the benchmarks time, each a :class:`harness.Runner` ready to run.

Training steps (Adam, parameters and optimizer state donated to the step):

* ``jax_grad``: ``jax.value_and_grad(model.loss)``, dense (V, d) gradient of E;
* ``manual``: the hand-derived ``backprop.manual_value_and_grad``, dense gradient of E;
* ``sparse``: ``sparse.make_sparse_step``, lazy Adam on the batch's rows of E only;
* ``flax``: the NNX module's ``flax_value_and_grad`` (skipped with a message without flax).

Passes without an update: ``jax_fwd`` (the loss), ``jax_fwdbwd_rows`` (hand-derived, dJ/dE as
rows), ``jax_fwdbwd_grad`` (``jax.grad``, dense dJ/dE). Every program is compiled before timing;
its compile time and XLA's working-memory estimate go into the runner's ``info``.
"""

from __future__ import annotations

import time

import harness
import jax
import jax.numpy as jnp
import optax

from jaxbackprop import backprop, model, sparse


def jax_runners(shape, hidden, windows, labels, wanted):
    """A runner for each JAX variant of ``wanted`` at ``shape``: training steps, then passes."""
    cfg = harness.model_config(shape, hidden)
    batches = [{"windows": jnp.asarray(w), "labels": jnp.asarray(y)} for w, y in zip(windows, labels)]
    grads = value_and_grads(wanted)
    runners = []
    for name in harness.JAX_TRAIN:
        if name in wanted and (name == "sparse" or name in grads):
            runners.append(train_runner(name, cfg, grads.get(name), batches))
    params = model.init_params(jax.random.key(0), cfg)
    passes = {
        "jax_fwd": lambda p, b: model.loss(p, b, cfg),
        "jax_fwdbwd_rows": lambda p, b: backprop.manual_value_and_row_grads(p, b, cfg),
        "jax_fwdbwd_grad": lambda p, b: jax.value_and_grad(model.loss)(p, b, cfg),
    }
    for name, fn in passes.items():
        if name in wanted:
            compiled, info = compile_with_info(jax.jit(fn), params, batches[0])
            runners.append(harness.Runner(name, pass_loop(compiled, params, batches), info=info))
    return runners


def value_and_grads(wanted) -> dict:
    """The dense-gradient functions by variant name; flax only when asked for and installed."""
    grads = {"jax_grad": jax.value_and_grad(model.loss), "manual": backprop.manual_value_and_grad}
    if "flax" in wanted:
        try:
            from jaxbackprop.flax_model import flax_value_and_grad
        except ImportError as e:
            print(f"  skip flax: {e}")
        else:
            grads["flax"] = flax_value_and_grad
    return grads


def train_runner(name, cfg, value_and_grad, batches):
    """One compiled Adam training step from fresh parameters; ``sparse`` updates only E's rows."""
    params = model.init_params(jax.random.key(0), cfg)
    tx = optax.adam(harness.LR)
    if name == "sparse":
        init, step = sparse.make_sparse_step(cfg, tx, "adam", harness.LR)
        state, extra = init(params), (None,)  # None: the dropout key (no dropout here)
    else:
        step, state, extra = dense_step(cfg, value_and_grad, tx), tx.init(params), ()
    compiled, info = compile_with_info(step, params, state, batches[0], *extra)
    return harness.Runner(name, train_loop(compiled, params, state, batches, extra), info=info)


def dense_step(cfg, value_and_grad, tx):
    """A jitted ``step(params, opt_state, batch)``: gradients of every parameter, then ``tx``."""

    def step(params, opt_state, batch):
        J, grads = value_and_grad(params, batch, cfg)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, J

    return jax.jit(step, donate_argnums=(0, 1))


def compile_with_info(jitted, *args):
    """``(compiled, info)``: the program compiled for ``args``, its compile time and working memory."""
    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, {"compile_s": time.perf_counter() - t, **memory_info(compiled)}


def memory_info(compiled) -> dict:
    """XLA's temp and argument buffer sizes (MB) of a compiled program; {} where not reported."""
    try:
        m = compiled.memory_analysis()
        return {"temp_mb": m.temp_size_in_bytes / 2**20, "argument_mb": m.argument_size_in_bytes / 2**20}
    except Exception:  # noqa: BLE001  (not every backend/version reports it)
        return {}


def train_loop(step, params, opt_state, batches, extra):
    """``run(n)``: n training steps cycling the batches, carrying params and state between calls."""
    state = {"params": params, "opt": opt_state, "i": 0}

    def run(n):
        p, o, i = state["params"], state["opt"], state["i"]
        for _ in range(n):
            p, o, J = step(p, o, batches[i % len(batches)], *extra)
            i += 1
        J.block_until_ready()
        state.update(params=p, opt=o, i=i)

    return run


def pass_loop(fn, params, batches):
    """``run(n)``: n calls of ``fn(params, batch)`` cycling the batches, then one wait."""
    state = {"i": 0}

    def run(n):
        for _ in range(n):
            out = fn(params, batches[state["i"] % len(batches)])
            state["i"] += 1
        jax.block_until_ready(out)  # (per call, a GPU would time the host round trip, not the pass)

    return run
