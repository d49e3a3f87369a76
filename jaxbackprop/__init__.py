"""jaxbackprop: the window-based NER classifier, its hand-derived gradients, and proof that
they equal ``jax.grad`` and numeric differences.

The names below are imported on first use, so that a light submodule (``check --impl``'s grader,
which must answer in a second) does not pay for importing JAX.
"""

import importlib

_EXPORTS = {
    "ModelConfig": "model_config",
    "init_params": "model",
    "forward": "model",
    "loss": "model",
    "manual_value_and_grad": "backprop",
    "check_gradients": "gradcheck",
}
__all__ = ["ModelConfig", "init_params", "forward", "loss", "manual_value_and_grad", "check_gradients"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"jaxbackprop.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'jaxbackprop' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
