"""jaxbackprop: the window-based NER classifier, its hand-derived gradients, and proof that
they equal ``jax.grad`` and numeric differences."""

import importlib

# name -> module; imported on first use, so that `jaxbackprop --help` and the command line's
# argument errors do not wait for JAX to import
_EXPORTS = {
    "ModelConfig": "jaxbackprop.model_config",
    "init_params": "jaxbackprop.model",
    "forward": "jaxbackprop.model",
    "loss": "jaxbackprop.model",
    "manual_value_and_grad": "jaxbackprop.backprop",
    "check_gradients": "jaxbackprop.gradcheck",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'jaxbackprop' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
