"""jaxbackprop: the window-based NER classifier, its hand-derived gradients, and proof that
they equal ``jax.grad`` and numeric differences."""

from jaxbackprop.backprop import manual_value_and_grad
from jaxbackprop.gradcheck import check_gradients
from jaxbackprop.model import ModelConfig, forward, init_params, loss

__all__ = ["ModelConfig", "init_params", "forward", "loss", "manual_value_and_grad", "check_gradients"]
__version__ = "0.1.0"
