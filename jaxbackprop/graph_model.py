"""The window model built from :mod:`jaxbackprop.graph` nodes: the loss as a computation graph.

:func:`window_model_graph` writes :func:`jaxbackprop.model.loss` (without dropout) op by op
with the teaching engine, so ``loss_node.backward()`` runs the lecture's reverse walk over the
whole model; :func:`graph_value_and_grad` wraps it in the call shape of
``jax.value_and_grad(loss)``. Its gradients equal ``jax.grad(jaxbackprop.loss)``.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxbackprop import graph, model
from jaxbackprop.batch_checks import check_batch


def _hidden(p, windows, features, cfg: model.ModelConfig):
    """h = f(x W^T + b) : (B, H), with x = [E rows of the window words; F rows] : (B, D)."""
    B = windows.shape[0]
    x = graph.reshape(graph.embedding(p["E"], windows), (B, cfg.window * cfg.embed_dim))  # (B, n d)
    if cfg.uses_features:
        xc = graph.reshape(graph.embedding(p["F"], features), (B, cfg.feature_width * cfg.feature_dim))  # (B, n k dc)
        x = graph.concat([x, xc], axis=1)  # (B, D)
    z = x @ graph.transpose(p["W"]) + p["b"]  # (B, H); b (H,) is broadcast over the batch
    return graph.activate(cfg.activation, z, p.get("alpha"))


def window_model_graph(params, batch, cfg: model.ModelConfig):
    """The whole loss of :func:`jaxbackprop.loss` (no dropout) as a graph of nodes.

    Args:
      params: as made by :func:`jaxbackprop.init_params`; each becomes a leaf node named by its key.
      batch: as for :func:`jaxbackprop.loss` (optional ``"weights"`` give a weighted mean).
      cfg: the model config; ``cfg.dropout`` is ignored, as ``loss`` ignores it without a key.

    Returns:
      ``(loss_node, param_nodes)``: after ``loss_node.backward()``, ``param_nodes[k].grad``
      equals ``jax.grad(jaxbackprop.loss)(params, batch, cfg)[k]``. For the score head the
      parameter nodes feed both the true and the corrupted window, so their gradients sum.
    """
    check_batch(batch, cfg)
    p = {k: graph.Node(v, name=k) for k, v in params.items()}
    if cfg.head == "softmax":
        logits = _hidden(p, batch["windows"], batch.get("features"), cfg) @ graph.transpose(p["U"]) + p["c"]  # (B, C)
        per_window = graph.softmax_cross_entropy(logits, batch["labels"])
    else:
        s = _hidden(p, batch["windows"], batch.get("features"), cfg) @ p["u"]  # (B,)
        s_c = _hidden(p, batch["corrupt"], batch.get("corrupt_features"), cfg) @ p["u"]
        # the constant 0 goes first: at the kink the tie routes to it, subgradient 0 like the model
        per_window = graph.maximum(0.0, model.MARGIN - s + s_c)
    dtype, B = p["W"].value.dtype, per_window.shape[0]
    weights = batch.get("weights")
    w = jnp.full((B,), 1.0, dtype) if weights is None else jnp.asarray(weights, dtype)
    w = w / jnp.sum(w)  # mean, or sum(w l) / sum(w) with weights
    head = p["U"] if cfg.head == "softmax" else p["u"]
    penalty = 0.5 * cfg.l2 * (graph.sum(p["W"] * p["W"]) + graph.sum(head * head))  # biases, E unpenalised
    return graph.sum(per_window * w) + penalty, p


def graph_value_and_grad(params, batch, cfg: model.ModelConfig, *, key=None):
    """``(J, dJ/dparams)`` from the graph engine; the call shape of ``jax.value_and_grad(loss)``.

    ``key`` exists for that call shape only: the engine has no dropout, so a key with
    ``cfg.dropout > 0`` raises ValueError.

    Returns:
      The loss (a 0-d array) and a dict with the keys, shapes and dtypes of ``params``.

    >>> import jax, jax.numpy as jnp
    >>> from jaxbackprop import ModelConfig, init_params, loss
    >>> cfg = ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> p = init_params(jax.random.key(0), cfg)
    >>> batch = {"windows": jnp.array([[1, 2, 1]]), "labels": jnp.array([3])}
    >>> J, g = graph_value_and_grad(p, batch, cfg)
    >>> bool(jnp.allclose(g["E"], jax.grad(loss)(p, batch, cfg)["E"], atol=1e-7))
    True
    """
    if key is not None and cfg.dropout > 0:
        raise ValueError(f"the graph engine has no dropout; got a key with cfg.dropout={cfg.dropout}")
    loss_node, nodes = window_model_graph(params, batch, cfg)
    loss_node.backward()
    return loss_node.value, {k: nodes[k].grad.astype(params[k].dtype) for k in params}
