"""Hand-derived backpropagation for the window model -- no jax.grad, vjp, jvp or custom_vjp.

The lecture's recipe, one step at a time: run the forward pass keeping what the backward pass
needs (``*_fwd`` returns the output and its residuals), then walk back from the loss, each step
turning the *upstream* gradient into a *downstream* one by multiplying with a *local* gradient
(``*_bwd(residuals, g)``). Shapes use B windows, n words per window, d word dimensions,
D = input_dim, H hidden units and C classes; the crf head adds S sentences of L tokens. The
derivation, line by line, is in ``docs/derivation.md``.

:func:`manual_value_and_grad` has the call shape of ``jax.value_and_grad(model.loss)`` and
returns gradients with exactly the tree structure of ``params``, so the two are
interchangeable inside one training step. The pass is assembled from the steps named in
:class:`Steps`; ``steps=`` swaps any of them (``jaxbackprop check --impl`` runs a student's own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbackprop import crf, model
from jaxbackprop import nonlinearities as nl

# the lecture's letters for each gradient's shape, named in a wrong shape's error
GRAD_SHAPES = {"E": "(V, d)", "F": "(Vc, dc)", "W": "(H, D)", "b": "(H,)", "U": "(C, H)", "c": "(C,)", "u": "(H,)"}
GRAD_SHAPES |= {"T": "(C, C)", "start": "(C,)", "end": "(C,)", "alpha": "()"}
GRAD_SHAPES |= {"logits": "(B, C)", "h": "(B, H)", "h_corrupt": "(B, H)", "e": "(S, L, C)", "z": "(B, H)"}
GRAD_SHAPES |= {"x": "(B, D)", "x_i": "(B, n, d)"}


class GradientShapeError(ValueError):
    """A step returned a gradient whose shape is not its tensor's: raised where it happens, naming both."""


def _expect_shape(step: str, tensor: str, got, shape):
    """``got``, unchanged, if its shape is ``shape``; else a :class:`GradientShapeError` naming the step and tensor.

    The pass checks every step's outputs as it goes, so a wrong shape is reported at the step that made it
    (``linear_bwd returned dJ/dW ...``), not as a broadcasting error some steps later.
    """
    if tuple(jnp.shape(got)) != tuple(shape):
        letters = GRAD_SHAPES.get(tensor.removeprefix("dJ/d"), "")
        flipped = len(shape) == 2 and tuple(jnp.shape(got)) == tuple(shape)[::-1]
        raise GradientShapeError(
            f"{step} returned {tensor} of the wrong shape: expected {letters + ' = ' if letters else ''}"
            f"{tuple(shape)}, got {tuple(jnp.shape(got))}" + (" (transposed?)" if flipped else "")
        )
    return got


def _expect_grads(step: str, grads, params):
    """Each gradient in ``grads`` checked against its parameter's shape (:func:`_expect_shape`)."""
    return {k: _expect_shape(step, f"dJ/d{k}", g, jnp.shape(params[k])) for k, g in grads.items()}


def window_fwd(params, windows, features, cfg: model.ModelConfig, key):
    """h = f(W x + b) for each window, with the residuals the backward pass needs.

    Args:
      params: as made by :func:`jaxbackprop.init_params`.
      windows: int (B, n) word ids; features: int (B, n*k) feature ids or None.
      cfg: the model config.
      key: dropout key, or None; :func:`jaxbackprop.model.dropout_masks` turns it into the very
        masks ``model.loss`` draws from the same key.

    Returns:
      ``(h, residuals)``: h (B, H), and what :func:`window_bwd` needs.
    """
    x = model.window_vectors(params, windows, cfg, features)  # (B, D)
    masks = model.dropout_masks(key, cfg, windows.shape[0], x.dtype)
    if masks is not None:
        x = x * masks[0]
    z = x @ params["W"].T + params["b"][None, :]  # (B, H)
    a = nl.apply(cfg.activation, z, params.get("alpha"))  # (B, H)
    h = a if masks is None else a * masks[1]
    return h, (windows, features, x, z, a, masks)


def activation_bwd(params, z, a, da, cfg: model.ModelConfig):
    """The error signal delta = dJ/dz = dJ/da o f'(z), elementwise: f acts on each unit alone.

    The Jacobian da/dz is diag(f'(z)), so the chain rule is a product entry by entry; no (H, H)
    matrix is formed. f' in terms of z and a = f(z): sigmoid a (1 - a); tanh 1 - a^2; hardtanh
    1 on [-1, 1], else 0; relu 1 if z > 0, else 0; leaky_relu 1 if z > 0, else 0.01; prelu 1 if
    z > 0, else alpha (``params["alpha"]``). :func:`jaxbackprop.nonlinearities.derivative` has them all.

    Args:
      params: the parameters (prelu reads its slope ``params["alpha"]``).
      z: (B, H) pre-activations; a: (B, H) activations f(z), before dropout.
      da: dJ/da, (B, H), the upstream gradient.
      cfg: the model config; ``cfg.activation`` names f.

    Returns:
      delta = dJ/dz, (B, H).
    """
    # a = f(z) unit by unit  =>  da/dz = diag(f'(z))  =>  delta = da o f'(z)    (B, H)
    return da * nl.derivative(cfg.activation, z, a, params.get("alpha"))


def linear_bwd(params, x, delta):
    """From delta = dJ/dz (B, H) through z = x W^T + b to the gradients of W, b and the input x.

    Row b of z is z_b = W x_b + b, so dz_b/dW_ij = x_b,j: dJ/dW = sum_b delta_b x_b^T (the outer
    products), which is delta^T x (H, D); dz/db = I: dJ/db = sum_b delta_b (H,); dz_b/dx_b = W:
    dJ/dx_b = W^T delta_b, for all rows at once delta W (B, D).

    Args:
      params: holds W (H, D) and b (H,).
      x: (B, D) the layer's inputs (the window's word vectors, after dropout).
      delta: dJ/dz, (B, H).

    Returns:
      ``({"W": (H, D), "b": (H,)}, dJ/dx (B, D))``.
    """
    # z_b = W x_b + b  =>  dJ/dW = sum_b delta_b x_b^T = delta^T x  (outer products)  (H, D)
    dW = delta.T @ x
    # dz/db = I  =>  dJ/db = sum_b delta_b                                        (H,)
    db = jnp.sum(delta, axis=0)
    # dz/dx = W  =>  dJ/dx_b = W^T delta_b, all windows at once: delta W            (B, D)
    return {"W": dW, "b": db}, delta @ params["W"]


def split_windows(dx, cfg: model.ModelConfig):
    """The n word slices of dJ/dx: dJ/dx (B, D) -> dJ/dx_i (B, n, d), one d-vector per word position i.

    x = [E[w_1]; ...; E[w_n]; features] is the n word vectors laid end to end (then the feature
    slices, when the model has them), so word i's gradient is the i-th d-wide slice of each row of
    dJ/dx: columns i d .. (i + 1) d - 1. Each slice is then the gradient of the row of E that word
    came from (:func:`scatter_rows`).

    Args:
      dx: dJ/dx, (B, D) with D = n d (+ the feature slices).
      cfg: the model config (``cfg.window`` is n, ``cfg.embed_dim`` is d).

    Returns:
      dJ/dx_i, (B, n, d).
    """
    B, n, d = dx.shape[0], cfg.window, cfg.embed_dim
    # x = [E[w_1]; ...; E[w_n]; ...]  =>  word i's slice is columns i d .. (i+1) d - 1   (B, n, d)
    return dx[:, : n * d].reshape(B, n, d)


def scatter_rows(ids, rows, num_rows):
    """Dense (num_rows, d) gradient: row ``ids[i]`` gets ``rows[i]`` *added*.

    Adding (not assigning) is what makes a word that appears twice get both updates; rows no id
    names stay exactly zero.

    >>> import jax.numpy as jnp
    >>> scatter_rows(jnp.array([2, 0, 2]), jnp.array([[1.0], [2.0], [3.0]]), 4).ravel().tolist()
    [2.0, 0.0, 4.0, 0.0]
    """
    return jnp.zeros((num_rows, rows.shape[-1]), rows.dtype).at[ids].add(rows)


def softmax_head_fwd(params, h, labels, weights):
    """Mean (weighted) cross-entropy of ``logits = h U^T + c``, with residuals.

    Args:
      params: holds U (C, H) and c (C,).
      h: (B, H) hidden vectors; labels: int (B,); weights: (B,) or None (plain mean).

    Returns:
      ``(J, residuals)``: the scalar loss (no L2 term) and what :func:`softmax_head_bwd` needs.
    """
    logits = output_layer(params, h)  # (B, C)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0]  # (B,)
    w = _normalised_weights(weights, h)
    return jnp.sum(w * nll), (h, jnp.exp(log_probs), labels, w)


def softmax_bwd(probs, labels, w):
    """dJ/dlogits of the weighted mean cross-entropy: w_b (y_hat_b - y_b) for each window b.

    J = sum_b w_b CE(y_b, softmax(logits_b)) and d CE / d logits = y_hat - y, with y the one-hot
    gold class: the softmax and the log cancel into one subtraction.

    Args:
      probs: (B, C) y_hat = softmax(logits); labels: int (B,) gold classes; w: (B,) the weights
        of the mean (1/B each for a plain mean).

    Returns:
      dJ/dlogits, (B, C); each row sums to 0.
    """
    y = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)  # (B, C)
    # J = sum_b w_b CE(y_b, softmax(logits_b))  =>  dJ/dlogits_b = w_b (y_hat_b - y_b)   (B, C)
    return w[:, None] * (probs - y)


def output_layer(params, h):
    """logits = h U^T + c, (B, H) -> (B, C): the softmax head's scores, the crf head's emissions."""
    return h @ params["U"].T + params["c"][None, :]


def output_layer_bwd(params, h, dlogits):
    """From dJ/dlogits (B, C) back through logits = h U^T + c to the gradients of U, c and h.

    Row b is logits_b = U h_b + c: dJ/dU = sum_b dlogits_b h_b^T = dlogits^T h (C, H); dJ/dc =
    sum_b dlogits_b (C,); dJ/dh_b = U^T dlogits_b, for all rows at once dlogits U (B, H).

    Args:
      params: holds U (C, H) and c (C,).
      h: (B, H) the hidden vectors; dlogits: dJ/dlogits, (B, C).

    Returns:
      ``({"U": (C, H), "c": (C,)}, dJ/dh (B, H))``.
    """
    # logits = h U^T + c  =>  dJ/dU = dlogits^T h,  dJ/dc = sum_b dlogits_b          (C, H), (C,)
    grads = {"U": dlogits.T @ h, "c": jnp.sum(dlogits, axis=0)}
    # dJ/dh = dlogits U                                                            (B, H)
    return grads, dlogits @ params["U"]


def score_head_fwd(params, h, h_corrupt, weights):
    """Mean (weighted) max-margin loss ``max(0, 1 - s + s_c)`` with s = u.h, with residuals.

    Args:
      params: holds u (H,).
      h, h_corrupt: (B, H) hidden vectors of the true and the corrupted windows.
      weights: (B,) or None (plain mean).

    Returns:
      ``(J, residuals)``: the scalar loss (no L2 term) and what :func:`score_head_bwd` needs.
    """
    s, s_c = h @ params["u"], h_corrupt @ params["u"]  # (B,), (B,)
    margin = model.MARGIN - s + s_c
    w = _normalised_weights(weights, h)
    return jnp.sum(w * jnp.where(margin > 0, margin, 0.0)), (h, h_corrupt, margin, w)


def score_head_bwd(params, residuals):
    """Gradients of the max-margin score head and dJ/dh for the true and the corrupted windows.

    J = sum_b w_b max(0, m_b) with m = 1 - s + s_c and s = u.h, s_c = u.h_c. The hinge passes its
    upstream where m > 0 and blocks it elsewhere (the subgradient 0 at the kink m = 0), so
    dJ/ds = -w [m > 0] and dJ/ds_c = +w [m > 0]; u is used by both windows, so its two gradients add.

    Args:
      params: holds u (H,).
      residuals: ``(h, h_corrupt, margin, w)``: h, h_corrupt (B, H) hidden vectors of the true and
        the corrupted windows, margin (B,) = 1 - s + s_c, w (B,) the weights of the mean.

    Returns:
      ``({"u": (H,)}, dJ/dh (B, H), dJ/dh_corrupt (B, H))``.
    """
    h, h_corrupt, margin, w = residuals
    # subgradient of max(0, m): 1 where m > 0, else 0 (also at the kink m = 0)
    active = w * (margin > 0).astype(h.dtype)  # (B,)
    # m = 1 - s + s_c  =>  dJ/ds = -active, dJ/ds_c = +active                      (B,)
    ds, ds_c = -active, active
    # s = u.h  =>  dJ/du = sum_b (ds_b h_b + ds_c,b h_c,b)  (u is used twice: gradients add)  (H,)
    grads = {"u": h.T @ ds + h_corrupt.T @ ds_c}
    # dJ/dh = ds u -- the lecture's upstream gradient into delta = u o f'(z)        (B, H)
    return grads, ds[:, None] * params["u"][None, :], ds_c[:, None] * params["u"][None, :]


def crf_head_fwd(params, emissions, labels, mask, weights):
    """Mean (weighted) CRF negative log-likelihood over the non-empty sentences, with residuals.

    Runs the forward algorithm and, for the backward pass, the backward recursion too.

    Args:
      params: holds T (C, C), start (C,), end (C,).
      emissions: (S, L, C); labels: int (S, L); mask: bool (S, L) prefix; weights: (S,) or None.

    Returns:
      ``(J, residuals)``: the scalar loss (no L2 term) and what :func:`crf_head_bwd` needs.
    """
    T, start, end = params["T"], params["start"], params["end"]
    alpha = crf.forward_scores(emissions, mask, T, start)  # (S, L, C)
    log_z = crf.log_partition(alpha, end)  # (S,)
    nll = jnp.where(crf.sentence_lengths(mask) > 0, log_z - crf.gold_score(emissions, labels, mask, T, start, end), 0.0)
    w = crf.sentence_weights(mask, weights, emissions.dtype)  # (S,), 0 for an empty sentence
    beta = crf.backward_scores(emissions, mask, T, end)  # (S, L, C)
    return jnp.sum(w * nll), (emissions, alpha, beta, log_z, labels, mask, w)


def crf_head_bwd(params, residuals):
    """Gradients of T, start, end and dJ/de, the emissions' gradient: marginals minus the gold tags.

    J = sum_s w_s (log Z_s - score_s(gold)). The derivative of log Z with respect to any score is
    the probability that a path uses it, which forward-backward gives: P(y_t = j) =
    exp(alpha_t[j] + beta_t[j] - log Z) (:func:`jaxbackprop.crf.marginals`) and P(y_t-1 = i, y_t = j)
    = exp(alpha_t-1[i] + T[i, j] + e_t[j] + beta_t[j] - log Z) (:func:`jaxbackprop.crf.pair_marginals`).
    So dJ/de_t = w (P_t - onehot(y_t)), dJ/dT = sum_s w_s sum_t (P(i then j) - [gold i then j]),
    dJ/dstart = sum_s w_s (P_1 - onehot(y_1)), dJ/dend likewise at each sentence's last real token.

    Args:
      params: holds T (C, C), start (C,), end (C,).
      residuals: ``(emissions, alpha, beta, log_z, labels, mask, w)``: emissions (S, L, C); alpha,
        beta (S, L, C) the forward and backward log-scores; log_z (S,); labels int (S, L); mask
        bool (S, L), true on each sentence's tokens; w (S,) the weights of the mean, 0 for an
        empty sentence.

    Returns:
      ``({"T": (C, C), "start": (C,), "end": (C,)}, dJ/de (S, L, C))``, 0 at padding.
    """
    emissions, alpha, beta, log_z, labels, mask, w = residuals
    C = emissions.shape[2]
    # log Z = logsumexp over paths: d log Z / d(any score) = the probability that the score is used
    p = crf.marginals(alpha, beta, log_z, mask)  # P(y_t = j)                           (S, L, C)
    xi = crf.pair_marginals(alpha, beta, emissions, mask, params["T"], log_z)  # P(i then j) (S, L-1, C, C)
    gold = jax.nn.one_hot(labels, C, dtype=emissions.dtype) * mask[:, :, None]  # [y_t = j]  (S, L, C)
    gold_pairs = gold[:, :-1, :, None] * gold[:, 1:, None, :]  # [y_{t-1} = i, y_t = j]   (S, L-1, C, C)
    # nll = log Z - score(gold): e_t[j] enters score(y) iff y_t = j  =>  d nll/de_t = P_t - gold_t
    de = w[:, None, None] * (p - gold)  # (S, L, C)
    # T[i, j] enters once per step i -> j  =>  expected minus gold transition counts     (C, C)
    dT = jnp.einsum("s,stij->ij", w, xi - gold_pairs)
    # start scores the first tag, end the last real one: their marginals minus the gold tag  (C,)
    last = crf.last_token(mask).astype(emissions.dtype)  # (S, L)
    dstart = w @ (p[:, 0] - gold[:, 0])
    dend = jnp.einsum("s,st,stc->c", w, last, p - gold)
    return {"T": dT, "start": dstart, "end": dend}, de


def l2_bwd(params, grads, cfg: model.ModelConfig):
    """Add the gradient of the L2 penalty (l2/2)(||W||^2 + ||U||^2) to the data term's gradients.

    d/dW (l2/2)||W||^2 = l2 W, likewise l2 U (or l2 u for the score head). Only these weights are
    penalised: the biases b and c, alpha, the feature table F and the crf's T, start and end keep
    their data gradients (and E's gradient is not among ``grads``).

    Args:
      params: the parameters; cfg: the model config (``cfg.l2``, ``cfg.head``).
      grads: dJ_data/dtheta for every parameter but E: W (H, D), b (H,), U (C, H) and c (C,) or
        u (H,), and any of alpha, F, T, start, end.

    Returns:
      ``grads`` with l2 W added to W and l2 U (or l2 u) to U (or u); the other entries as they were.
    """
    head = "u" if cfg.head == "score" else "U"
    # J = J_data + l2/2 (||W||^2 + ||U||^2)  =>  dJ/dW = dJ_data/dW + l2 W     (H, D), (C, H)
    return {**grads, "W": grads["W"] + cfg.l2 * params["W"], head: grads[head] + cfg.l2 * params[head]}


class Steps(NamedTuple):
    """The backward steps the pass is assembled from, in backward order (the head first).

    :data:`REFERENCE_STEPS` holds this module's own; another ``Steps`` -- a student's, with the
    reference standing in for the steps not written yet -- runs the same pass with its steps
    swapped in, called with the same positional arguments.
    """

    softmax_bwd: Callable
    score_head_bwd: Callable
    crf_head_bwd: Callable
    output_layer_bwd: Callable
    activation_bwd: Callable
    linear_bwd: Callable
    split_windows: Callable
    scatter_rows: Callable
    l2_bwd: Callable


def reference_steps() -> Steps:
    """This module's own steps, looked up when called: a step patched into the module (a test planting a
    mistake in the library's own pass) is the one the pass runs."""
    return Steps(*(globals()[name] for name in Steps._fields))


REFERENCE_STEPS = reference_steps()


def window_bwd(params, residuals, dh, cfg: model.ModelConfig, steps: Steps | None = None):
    """From dJ/dh (B, H) to the gradients of the window layer: dropout, f', then z = W x + b.

    Args:
      params: as for :func:`window_fwd`.
      residuals: the second output of :func:`window_fwd`.
      dh: dJ/dh, (B, H).
      cfg: the model config.
      steps: the backward steps (:class:`Steps`) it calls.

    Returns:
      ``(grads, word_ids, word_rows)``: ``grads`` holds W, b (and alpha, F); the gradient
      of E is left as rows -- ``word_rows[i]`` (d,) belongs to row ``word_ids[i]`` of E -- so a
      caller can scatter-add them densely (:func:`scatter_rows`) or update only those rows.
    """
    steps = steps or reference_steps()
    windows, features, x, z, a, masks = residuals
    B, n, d = windows.shape[0], cfg.window, cfg.embed_dim
    # dropout h = a * m_h:  dJ/da = dJ/dh * m_h                                 (B, H)
    da = dh if masks is None else dh * masks[1]
    delta = _expect_shape("activation_bwd", "dJ/dz", steps.activation_bwd(params, z, a, da, cfg), z.shape)
    grads, dx = steps.linear_bwd(params, x, delta)  # dJ/dW = delta^T x, dJ/dx = delta W
    grads, dx = _expect_grads("linear_bwd", grads, params), _expect_shape("linear_bwd", "dJ/dx", dx, x.shape)
    if masks is not None:
        dx = dx * masks[0]  # dropout on x: the same mask gates the gradient
    grads = dict(grads)
    if cfg.activation == "prelu":
        # h = alpha z where z <= 0  =>  dJ/dalpha = sum over all units of dJ/da * z [z <= 0]   ()
        grads["alpha"] = jnp.sum(da * nl.prelu_alpha_derivative(z))
    # x = [E[w_1]; ...; E[w_n]; ...]: the word slices of dJ/dx are the gradients of those rows
    word_rows = _expect_shape("split_windows", "dJ/dx_i", steps.split_windows(dx, cfg), (B, n, d)).reshape(B * n, d)
    if cfg.uses_features:
        feature_rows = dx[:, n * d :].reshape(B * cfg.feature_width, cfg.feature_dim)  # (B n k, dc)
        F = steps.scatter_rows(features.reshape(-1), feature_rows, cfg.feature_vocab_size)
        grads["F"] = _expect_shape("scatter_rows", "dJ/dF", F, params["F"].shape)
    return grads, windows.reshape(-1), word_rows


def softmax_head_bwd(params, residuals, steps: Steps | None = None):
    """Gradients of the softmax head and dJ/dh: :func:`softmax_bwd`, then :func:`output_layer_bwd`.

    Returns:
      ``({"U": (C, H), "c": (C,)}, dJ/dh (B, H))``.
    """
    steps = steps or reference_steps()
    h, probs, labels, w = residuals
    dlogits = _expect_shape("softmax_bwd", "dJ/dlogits", steps.softmax_bwd(probs, labels, w), probs.shape)
    return _output_layer_bwd(params, h, dlogits, steps)


def _output_layer_bwd(params, h, dlogits, steps: Steps):
    grads, dh = steps.output_layer_bwd(params, h, dlogits)
    return _expect_grads("output_layer_bwd", grads, params), _expect_shape("output_layer_bwd", "dJ/dh", dh, h.shape)


def _crf_value_and_row_grads(params, batch, cfg: model.ModelConfig, key, steps: Steps):
    """The crf head's ``(J, grads without L2, ids, rows)``: every token is a row of the window layer."""
    windows, features = batch["windows"], batch.get("features")
    S, L, n = windows.shape
    rows = None if features is None else features.reshape(S * L, features.shape[2])
    h, res = window_fwd(params, windows.reshape(S * L, n), rows, cfg, key)  # (S L, H)
    emissions = output_layer(params, h).reshape(S, L, cfg.num_classes)
    J, head_res = crf_head_fwd(params, emissions, batch["labels"], batch["mask"], batch.get("weights"))
    head_grads, de = steps.crf_head_bwd(params, head_res)
    head_grads, de = (
        _expect_grads("crf_head_bwd", head_grads, params),
        _expect_shape("crf_head_bwd", "dJ/de", de, emissions.shape),
    )
    # the emission layer is the softmax head's, token by token; padding tokens pass back 0
    out_grads, dh = _output_layer_bwd(params, h, de.reshape(S * L, cfg.num_classes), steps)
    grads, ids, rows = window_bwd(params, res, dh, cfg, steps)
    return J, {**grads, **head_grads, **out_grads}, ids, rows


def _normalised_weights(weights, h):
    # J = sum_b w_b l_b with sum_b w_b = 1: 1/B each for a plain mean                (B,)
    B = h.shape[0]
    if weights is None:
        return jnp.full((B,), 1.0 / B, h.dtype)
    weights = weights.astype(h.dtype)
    return weights / jnp.sum(weights)


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def manual_value_and_row_grads(params, batch, cfg: model.ModelConfig, *, key=None, steps: Steps | None = None):
    """Loss and gradients with E's gradient as rows: ``(J, grads_without_E, (ids, rows))``.

    ``ids`` (N,) and ``rows`` (N, d) list one gradient row per word position in the batch
    (N = B n, 2 B n for the score head, S L n for the crf head); summing rows with equal ids gives dJ/dE. This is
    what a rows-only (sparse) embedding update consumes. ``steps``: as for :func:`manual_value_and_grad`.
    """
    model.validate_batch(batch, cfg)
    steps = steps or reference_steps()
    weights = batch.get("weights")
    if cfg.head == "crf":
        J, grads, ids, rows = _crf_value_and_row_grads(params, batch, cfg, key, steps)
        head_grads = {}
    elif cfg.head == "softmax":
        h, res = window_fwd(params, batch["windows"], batch.get("features"), cfg, key)
        J, head_res = softmax_head_fwd(params, h, batch["labels"], weights)
        head_grads, dh = softmax_head_bwd(params, head_res, steps)
        grads, ids, rows = window_bwd(params, res, dh, cfg, steps)
    else:
        k_true, k_corrupt = (None, None) if key is None else jax.random.split(key)
        h, res = window_fwd(params, batch["windows"], batch.get("features"), cfg, k_true)
        h_c, res_c = window_fwd(params, batch["corrupt"], batch.get("corrupt_features"), cfg, k_corrupt)
        J, head_res = score_head_fwd(params, h, h_c, weights)
        head_grads, dh, dh_c = steps.score_head_bwd(params, head_res)
        head_grads = _expect_grads("score_head_bwd", head_grads, params)
        dh, dh_c = (
            _expect_shape("score_head_bwd", f"dJ/d{t}", g, h.shape) for t, g in (("h", dh), ("h_corrupt", dh_c))
        )
        # the window layer is used twice (true and corrupted window): its gradients sum
        grads, ids, rows = window_bwd(params, res, dh, cfg, steps)
        grads_c, ids_c, rows_c = window_bwd(params, res_c, dh_c, cfg, steps)
        grads = _add(grads, grads_c)
        ids, rows = jnp.concatenate([ids, ids_c]), jnp.concatenate([rows, rows_c])
    grads = {**grads, **head_grads}
    if cfg.l2:  # the penalty's gradient: l2 W and l2 U (or u); nothing else is penalised
        J = J + model.l2_penalty(params, cfg)
        grads = _expect_grads("l2_bwd", dict(steps.l2_bwd(params, grads, cfg)), params)
    return J, grads, (ids, rows)


def manual_value_and_grad(params, batch, cfg: model.ModelConfig, *, key=None, steps: Steps | None = None):
    """``(J, dJ/dparams)`` by hand-derived backpropagation; a drop-in for ``jax.value_and_grad``.

    Args:
      params: as made by :func:`jaxbackprop.init_params`.
      batch: as for :func:`jaxbackprop.loss`.
      cfg: the model config (static under jit).
      key: dropout key; the same key gives the same masks as ``loss(..., key=key)``.
      steps: the backward steps the pass is assembled from (:class:`Steps`); by default this
        module's own. ``jaxbackprop check --impl`` passes a student's.

    Returns:
      The loss and a dict with exactly the keys, shapes and dtypes of ``params``. Rows of E that
      no window touches are exactly zero.

    >>> import jax, jax.numpy as jnp
    >>> from jaxbackprop import ModelConfig, init_params, loss
    >>> cfg = ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> p = init_params(jax.random.key(0), cfg)
    >>> batch = {"windows": jnp.array([[1, 2, 1]]), "labels": jnp.array([3])}
    >>> J, g = manual_value_and_grad(p, batch, cfg)
    >>> bool(jnp.allclose(g["W"], jax.grad(loss)(p, batch, cfg)["W"], atol=1e-6))
    True
    """
    steps = steps or reference_steps()
    J, grads, (ids, rows) = manual_value_and_row_grads(params, batch, cfg, key=key, steps=steps)
    # scatter-add each word slice of dJ/dx into its row of E (repeated words: both updates)
    grads["E"] = _expect_shape(
        "scatter_rows", "dJ/dE", steps.scatter_rows(ids, rows, cfg.vocab_size), params["E"].shape
    )
    return J, {k: grads[k].astype(params[k].dtype) for k in params}
