"""The six nonlinearities f of the window model, each with its hand-written derivative f'.

Every derivative is written by hand (no autodiff) so that :mod:`jaxbackprop.backprop` can use
it as the lecture's *local gradient*. Each takes the pre-activation ``z`` and the already
computed ``h = f(z)`` because several derivatives are cheapest in terms of ``h``
(sigmoid: ``h (1 - h)``; tanh: ``1 - h^2``).

Kinks use the conventional subgradient, chosen to agree with how the forward pass is written
(so ``jax.grad`` of the forward pass returns the same value at the kink):

* relu: ``f'(0) = 0`` (the unit is "off" at exactly zero).
* leaky_relu / prelu: ``f'(0) = slope`` (the negative side's slope).
* hardtanh: ``f'(z) = 1`` on the closed interval ``[-1, 1]``, 0 outside.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxbackprop.settings import ACTIVATIONS

LEAKY_SLOPE = 0.01
PRELU_ALPHA_INIT = 0.25


def _check_name(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def apply(name: str, z, alpha=None):
    """h = f(z), elementwise.

    Args:
      name: one of :data:`ACTIVATIONS`.
      z: pre-activations, any shape.
      alpha: the learned negative slope (scalar), used by ``"prelu"`` only.

    >>> import jax.numpy as jnp
    >>> apply("relu", jnp.array([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 2.0]
    """
    _check_name(name)
    if name == "sigmoid":
        return 1.0 / (1.0 + jnp.exp(-z))
    if name == "tanh":
        return jnp.tanh(z)
    if name == "hardtanh":
        return jnp.where(z > 1.0, 1.0, jnp.where(z < -1.0, -1.0, z))
    if name == "relu":
        return jnp.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return jnp.where(z > 0, z, LEAKY_SLOPE * z)
    if alpha is None:
        raise ValueError("prelu needs its slope alpha (params['alpha'])")
    return jnp.where(z > 0, z, alpha * z)


def derivative(name: str, z, h, alpha=None):
    """f'(z) written by hand, elementwise; ``h`` must be ``apply(name, z, alpha)``.

    >>> import jax.numpy as jnp
    >>> z = jnp.array([0.0]); derivative("sigmoid", z, apply("sigmoid", z)).tolist()
    [0.25]
    """
    _check_name(name)
    if name == "sigmoid":
        # s'(z) = s(z) (1 - s(z))
        return h * (1.0 - h)
    if name == "tanh":
        # tanh'(z) = 1 - tanh(z)^2
        return 1.0 - h * h
    if name == "hardtanh":
        return jnp.where((z >= -1.0) & (z <= 1.0), 1.0, 0.0).astype(z.dtype)
    if name == "relu":
        return jnp.where(z > 0, 1.0, 0.0).astype(z.dtype)
    if name == "leaky_relu":
        return jnp.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype)
    if alpha is None:
        raise ValueError("prelu needs its slope alpha (params['alpha'])")
    return jnp.where(z > 0, jnp.ones_like(z), alpha * jnp.ones_like(z))


def prelu_alpha_derivative(z):
    """dh/d(alpha) for prelu, elementwise: 0 where z > 0, z elsewhere.

    >>> import jax.numpy as jnp
    >>> prelu_alpha_derivative(jnp.array([-2.0, 3.0])).tolist()
    [-2.0, 0.0]
    """
    return jnp.where(z > 0, jnp.zeros_like(z), z)
