"""The window model of :mod:`jaxbackprop.model` written as a Flax NNX module: the same numbers,
held by objects instead of a dict.

The module computes exactly what ``model.forward`` computes::

    x = [E[w_1]; ...; E[w_n]; F[c_1]; ...; F[c_nk]]              (B, D)
    z = x W^T + b,  h = f(z)                                     (B, H)
    softmax head: logits = h U^T + c (B, C);  score head: s = h u (B,)
    crf head: the softmax head's logits of every token of padded sentences as emissions (S, L, C),
              scored by :mod:`jaxbackprop.crf`'s pure functions with the module's T, start, end

Layout. ``W`` and ``U`` live in ``nnx.Linear`` layers, as a Flax user would write them. A Linear
stores its kernel as (in, out) and computes ``x @ kernel``, while the lecture writes ``W`` as
(out, in) = (H, D) and ``z = W x``; so ``hidden.kernel`` is ``W^T`` and ``out.kernel`` is ``U^T``,
and :func:`from_params` / :func:`to_params` transpose. Everything else is stored as is:

    pure dict       module
    E      (V, d)   E.embedding        (nnx.Embed)
    F      (K, dc)  F.embedding        (nnx.Embed; None without per-word features)
    W (H, D), b     hidden.kernel (D, H), hidden.bias   (nnx.Linear)
    U (C, H), c     out.kernel (H, C), out.bias         (nnx.Linear; softmax and crf heads)
    T (C, C)        T                  (nnx.Param; crf head, like start (C,) and end (C,))
    u      (H,)     u                  (nnx.Param; score head)
    alpha  ()       alpha              (nnx.Param; prelu)

:func:`flax_value_and_grad` has the call shape of ``jax.value_and_grad(model.loss)`` and of
``backprop.manual_value_and_grad``, so a training step can swap any of the three in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxbackprop import crf, model
from jaxbackprop import nonlinearities as nl
from jaxbackprop.batch_checks import check_ids, check_sized


class WindowClassifier(nnx.Module):
    """The window classifier as an NNX module (see the module docstring for the layout).

    Built directly, it draws fresh weights from the same distributions as
    ``model.init_params(init="xavier")`` (not the same draws); use :func:`from_params` to hold
    given values.

    >>> import jax.numpy as jnp
    >>> cfg = model.ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> WindowClassifier(cfg, rngs=nnx.Rngs(0))(jnp.array([[1, 2, 3]])).shape
    (1, 5)
    """

    def __init__(self, cfg: model.ModelConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        check_sized(cfg)
        self.cfg = cfg
        H = cfg.hidden_dim
        small = nnx.initializers.normal(model.NORMAL_INIT_STD)
        xavier = nnx.initializers.glorot_uniform()  # U(-r, r), r = sqrt(6 / (fan_in + fan_out))
        self.E = nnx.Embed(cfg.vocab_size, cfg.embed_dim, param_dtype=dtype, embedding_init=small, rngs=rngs)
        # each optional part is assigned once: NNX marks an attribute first set to None as static
        if cfg.uses_features:
            self.F = nnx.Embed(
                cfg.feature_vocab_size, cfg.feature_dim, param_dtype=dtype, embedding_init=small, rngs=rngs
            )
        else:
            self.F = None
        self.hidden = nnx.Linear(cfg.input_dim, H, param_dtype=dtype, kernel_init=xavier, rngs=rngs)
        if cfg.head == "score":
            self.out = None
            self.u = nnx.Param(xavier(rngs.params(), (H, 1), dtype)[:, 0])  # fan_in H, fan_out 1
        else:
            self.out = nnx.Linear(H, cfg.num_classes, param_dtype=dtype, kernel_init=xavier, rngs=rngs)
            self.u = None
        if cfg.head == "crf":  # zero transitions, as model.init_params: a fresh CRF is the per-token softmax
            C = cfg.num_classes
            self.T = nnx.Param(jnp.zeros((C, C), dtype))
            self.start, self.end = nnx.Param(jnp.zeros((C,), dtype)), nnx.Param(jnp.zeros((C,), dtype))
        else:
            self.T = self.start = self.end = None
        self.alpha = nnx.Param(jnp.asarray(nl.PRELU_ALPHA_INIT, dtype)) if cfg.activation == "prelu" else None

    def __call__(self, windows, features=None, *, key=None):
        """Logits (B, C) or scores (B,), like ``model.forward``; dropout iff ``key`` is given.

        Dropout uses ``model.dropout_masks(key, ...)`` rather than ``nnx.Dropout``: an
        ``nnx.Dropout`` draws its mask from its own ``nnx.Rngs`` stream (mutable state that a
        pure training step would have to thread through), and its masks could never equal the
        pure model's. With an explicit key, one key gives the very same masks here, in
        ``model.loss`` and in ``backprop.manual_value_and_grad``, so the three can be compared
        exactly with dropout on.
        """
        cfg = self.cfg
        check_ids("windows", windows, cfg.window, cfg.vocab_size)
        if cfg.uses_features:
            check_ids("features", features, cfg.feature_width, cfg.feature_vocab_size)
        B = windows.shape[0]
        x = self.E(windows).reshape(B, cfg.window * cfg.embed_dim)  # (B, n d)
        if self.F is not None:
            x = jnp.concatenate([x, self.F(features).reshape(B, cfg.feature_width * cfg.feature_dim)], axis=1)
        masks = model.dropout_masks(key, cfg, B, x.dtype)
        if masks is not None:
            x = x * masks[0]
        alpha = None if self.alpha is None else self.alpha[...]
        h = nl.apply(cfg.activation, self.hidden(x), alpha)  # (B, H)
        if masks is not None:
            h = h * masks[1]
        if self.out is not None:
            return self.out(h)  # (B, C)
        return h @ self.u[...]  # (B,)

    def sentence_emissions(self, windows, features=None, *, key=None):
        """Emissions (S, L, C) of padded sentences, like ``model.sentence_emissions``: the (S, L)
        tokens are flattened to S*L windows, so dropout draws the pure model's masks."""
        S, L, n = windows.shape
        rows = None if features is None else features.reshape(S * L, features.shape[2])
        return self(windows.reshape(S * L, n), rows, key=key).reshape(S, L, self.cfg.num_classes)


def flax_loss(module: WindowClassifier, batch, cfg: model.ModelConfig, *, key=None):
    """The objective J of ``model.loss``, computed by ``module``: mean (or
    ``batch["weights"]``-weighted mean) cross-entropy or max-margin hinge, or for the crf head the
    mean sentence NLL over the non-empty sentences, plus ``l2/2 (||W||^2 + ||U or u||^2)``.

    Args:
      module: a :class:`WindowClassifier` built for ``cfg``.
      batch, cfg, key: as for ``model.loss`` (``key``: dropout key, None for no dropout).
    """
    if module.cfg != cfg:
        raise ValueError(f"module was built for {module.cfg}, but loss was asked for {cfg}")
    model.validate_batch(batch, cfg)
    if cfg.head == "crf":
        J = _crf_mean_nll(module, batch, key)
        return J + _l2(module, module.out.kernel[...], cfg)
    if cfg.head == "softmax":
        log_probs = jax.nn.log_softmax(module(batch["windows"], batch.get("features"), key=key), axis=-1)
        per_example = -jnp.take_along_axis(log_probs, batch["labels"][:, None], axis=1)[:, 0]
        head = module.out.kernel[...]
    else:
        k_true, k_corrupt = (None, None) if key is None else jax.random.split(key)
        s = module(batch["windows"], batch.get("features"), key=k_true)
        s_c = module(batch["corrupt"], batch.get("corrupt_features"), key=k_corrupt)
        margin = model.MARGIN - s + s_c
        per_example = jnp.where(margin > 0, margin, 0.0)  # 0 subgradient at the kink, as model.py
        head = module.u[...]
    weights = batch.get("weights")
    if weights is None:
        J = jnp.mean(per_example)
    else:
        J = jnp.sum(weights * per_example) / jnp.sum(weights)
    return J + _l2(module, head, cfg)


def _crf_mean_nll(module: WindowClassifier, batch, key):
    """The crf head's data term: crf.py's sentence NLL of the module's emissions, weighted as ``model.loss``."""
    e = module.sentence_emissions(batch["windows"], batch.get("features"), key=key)  # (S, L, C)
    T, start, end = module.T[...], module.start[...], module.end[...]
    nll = crf.sentence_nll(e, batch["labels"], batch["mask"], T, start, end)  # (S,)
    return jnp.sum(crf.sentence_weights(batch["mask"], batch.get("weights"), nll.dtype) * nll)


def _l2(module: WindowClassifier, head, cfg: model.ModelConfig):
    # ||W^T||^2 = ||W||^2: the transposed kernel has the same penalty
    return 0.5 * cfg.l2 * (jnp.sum(module.hidden.kernel[...] ** 2) + jnp.sum(head**2))


def _check_params(params, cfg: model.ModelConfig) -> None:
    expected = model.param_shapes(cfg)
    if not isinstance(params, dict) or set(params) != set(expected):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params must have keys {sorted(expected)} for this config, got {got}")
    for k, shape in expected.items():
        if tuple(params[k].shape) != shape:
            raise ValueError(f"params[{k!r}] must have shape {shape}, got {tuple(params[k].shape)}")


def _module_layout(p, cfg: model.ModelConfig) -> dict:
    """Pure dict -> the module's nested state dict (W and U transposed into kernels)."""
    state = {"E": {"embedding": p["E"]}, "hidden": {"kernel": p["W"].T, "bias": p["b"]}}
    if cfg.head == "score":
        state["u"] = p["u"]
    else:
        state["out"] = {"kernel": p["U"].T, "bias": p["c"]}
    if cfg.head == "crf":
        state.update(T=p["T"], start=p["start"], end=p["end"])
    if cfg.uses_features:
        state["F"] = {"embedding": p["F"]}
    if cfg.activation == "prelu":
        state["alpha"] = p["alpha"]
    return state


def _pure_layout(s, cfg: model.ModelConfig) -> dict:
    """The module's nested state dict (of values or of gradients) -> the pure dict."""
    p = {"E": s["E"]["embedding"], "W": s["hidden"]["kernel"].T, "b": s["hidden"]["bias"]}
    if cfg.head == "score":
        p["u"] = s["u"]
    else:
        p["U"], p["c"] = s["out"]["kernel"].T, s["out"]["bias"]
    if cfg.head == "crf":
        p.update(T=s["T"], start=s["start"], end=s["end"])
    if cfg.uses_features:
        p["F"] = s["F"]["embedding"]
    if cfg.activation == "prelu":
        p["alpha"] = s["alpha"]
    return p


def from_params(params, cfg: model.ModelConfig) -> WindowClassifier:
    """A module holding exactly the values of a pure ``params`` dict (``model.init_params``).

    >>> import jax
    >>> cfg = model.ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> m = from_params(model.init_params(jax.random.key(0), cfg), cfg)
    >>> m.hidden.kernel.shape, to_params(m)["W"].shape  # nnx.Linear holds W transposed
    ((12, 6), (6, 12))
    """
    _check_params(params, cfg)
    # build only the structure (eval_shape: no random draws), then drop the values in
    abstract = nnx.eval_shape(lambda: WindowClassifier(cfg, rngs=nnx.Rngs(0), dtype=params["W"].dtype))
    graphdef, state = nnx.split(abstract)
    nnx.replace_by_pure_dict(state, _module_layout(params, cfg))
    return nnx.merge(graphdef, state)


def to_params(module: WindowClassifier) -> dict:
    """The module's parameters as the pure dict: keys and shapes of ``model.init_params``."""
    return _pure_layout(nnx.to_pure_dict(nnx.state(module, nnx.Param)), module.cfg)


def flax_value_and_grad(params, batch, cfg: model.ModelConfig, *, key=None):
    """``(J, dJ/dparams)`` by ``nnx.value_and_grad`` on the module; a drop-in for
    ``jax.value_and_grad(model.loss)`` and ``backprop.manual_value_and_grad``.

    The module is rebuilt from ``params`` on every call; under ``jax.jit`` (``cfg`` static) the
    split/merge bookkeeping runs only while tracing, so the compiled step is the plain math.

    Returns:
      The loss and a dict with exactly the keys and shapes of ``params``.

    >>> import jax, jax.numpy as jnp
    >>> cfg = model.ModelConfig(vocab_size=10, embed_dim=4, window=3, hidden_dim=6)
    >>> p = model.init_params(jax.random.key(0), cfg)
    >>> batch = {"windows": jnp.array([[1, 2, 1]]), "labels": jnp.array([3])}
    >>> J, g = flax_value_and_grad(p, batch, cfg)
    >>> bool(jnp.allclose(g["W"], jax.grad(model.loss)(p, batch, cfg)["W"], atol=1e-6))
    True
    """
    module = from_params(params, cfg)
    # nnx.value_and_grad differentiates w.r.t. the module's nnx.Param variables (argnums=0);
    # it cannot take keyword arguments, so batch, cfg and key are closed over.
    J, grads = nnx.value_and_grad(lambda m: flax_loss(m, batch, cfg, key=key))(module)
    return J, _pure_layout(nnx.to_pure_dict(grads), cfg)
