"""The child's side of ``check --impl``: import the student's file and run its code on the recorded inputs.

Each handler runs in the child process (:func:`jaxbackprop.impl_worker.serve`), under its alarm; what
it returns is pickled back to the grader, arrays as numpy. The student's file is imported as a fresh
module each time (an edit is seen), its imports are noted (a step that imports the reference, or a
file that holds one of its functions, is the reference's work), and the inputs are fresh copies --
jax arrays when the file uses jax (as the reference hands them on), numpy arrays when it does not.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from jaxbackprop.impl_worker import REFERENCE, StepTimeout, where


def _load(state: dict, path: str, absolute: str, signatures: dict):
    """Import the student's file as a fresh module: its steps, whether it leans on the reference, its functions."""
    import importlib.util

    state.clear()
    state["path"], state["absolute"] = path, absolute  # as the student named it; as this process finds it
    name = f"_jaxbackprop_student_{os.getpid()}_{time.monotonic_ns()}"  # a fresh module: a reload sees the edits
    fresh = REFERENCE not in sys.modules
    spec = importlib.util.spec_from_file_location(name, absolute)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while a class is built
    requested: list = []
    try:
        with _noting_imports(requested):
            spec.loader.exec_module(module)
    except SyntaxError as err:
        text = (err.text or "").strip()
        return ("unusable", f"{path}:{err.lineno}: syntax error: {err.msg}" + (f": {text}" if text else ""))
    except StepTimeout:
        raise
    except SystemExit as err:
        return (
            "unusable",
            f"{where(err, state)}: importing it called sys.exit({'' if err.code is None else err.code})",
        )
    except BaseException as err:  # the student's module-level code: say where it failed
        return ("unusable", f"{where(err, state)}: importing it raised {type(err).__name__}: {err}")
    finally:
        sys.modules.pop(name, None)
    found = {n: getattr(module, n) for n in signatures if callable(getattr(module, n, None))}
    for step, fn in found.items():
        problem = _signature_problem(path, step, fn, signatures[step])
        if problem:
            return ("unusable", problem)
    state["steps"] = found
    state["as_jax"] = any(r.split(".")[0] in ("jax", "jaxbackprop") for r in requested)
    origin = {n: getattr(fn, "__module__", None) or "" for n, fn in found.items()}
    return (
        "loaded",
        {
            "found": sorted(found),
            "foreign": {n: o for n, o in origin.items() if o.split(".")[0] == "jaxbackprop"},
            "leaning": _leans_on_reference(module, requested, fresh),
            "takes_key": "value_and_grad" in found and _takes_key(found["value_and_grad"]),
            "functions": {n: _first_line(v) for n, v in vars(module).items() if getattr(v, "__module__", None) == name},
        },
    )


@contextlib.contextmanager
def _noting_imports(requested: list):
    """Every module the code asks for while the block runs, ``from a import b`` as ``a`` and ``a.b``."""
    import builtins

    real = builtins.__import__

    def noting(name, globals=None, locals=None, fromlist=(), level=0):
        requested.extend([name] + [f"{name}.{f}" for f in fromlist or ()])
        return real(name, globals, locals, fromlist, level)

    builtins.__import__ = noting
    try:
        yield
    finally:
        builtins.__import__ = real


def _signature_problem(path, name, fn, wanted: list) -> str:
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: its first call will tell
        return ""
    try:
        signature.bind(*wanted)
    except TypeError:
        line = _first_line(fn) or "?"
        return f"{path}:{line}: {name}{signature} cannot be called as the pass calls it, {name}({', '.join(wanted)})"
    return ""


def _leans_on_reference(module, requested: list, fresh: bool) -> str:
    """Why the module counts as the reference's work (or ""): it imports or holds the reference module."""
    if any(r == REFERENCE or r.startswith(REFERENCE + ".") for r in requested):
        return f"imports {REFERENCE}"
    for name, value in vars(module).items():
        if getattr(value, "__name__", None) == REFERENCE or getattr(value, "__module__", None) == REFERENCE:
            return f"holds {name} from {REFERENCE}"
    if fresh and REFERENCE in sys.modules:
        return f"imports {REFERENCE} (through another module)"
    return ""


def _takes_key(fn) -> bool:
    import inspect

    try:
        return "key" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _first_line(fn) -> int:
    return getattr(getattr(fn, "__code__", None), "co_firstlineno", 0)


def _call(state: dict, name: str, args):
    """One of the student's steps on the reference's inputs: its output as numpy trees."""
    fn = state["steps"][name]
    args = _inputs(args, state["as_jax"])
    requested: list = []
    with _noting_imports(requested), _op_by_op():
        out = ("ok", _outputs(fn(*args)))
    if any(r == REFERENCE or r.startswith(REFERENCE + ".") for r in requested):
        return ("reference", f"imports {REFERENCE} while it runs")
    return out


@contextlib.contextmanager
def _op_by_op():
    """``jax.disable_jit`` when jax is loaded (as the reference was recorded), else nothing."""
    if "jax" not in sys.modules:
        yield
        return
    import jax

    with jax.disable_jit():
        yield


def _inputs(tree, as_jax: bool):
    """Fresh copies (a step cannot edit the next one's inputs): jax arrays when the file uses jax, else numpy."""
    from jaxbackprop.impl_cache import RecordedConfig

    if isinstance(tree, dict):
        return {k: _inputs(v, as_jax) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_inputs(v, as_jax) for v in tree)
    if isinstance(tree, RecordedConfig):
        model = sys.modules.get("jaxbackprop.model")
        return tree.to(model.ModelConfig) if model is not None else tree
    if hasattr(tree, "dtype") and hasattr(tree, "shape"):
        if as_jax:
            import jax.numpy as jnp

            return jnp.asarray(tree)
        return tree.copy()
    return tree


def _outputs(tree):
    """The student's output with arrays as numpy (what pickles); anything else as a note of what it was."""
    import numpy as np

    if isinstance(tree, dict):
        return {k: _outputs(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_outputs(v) for v in tree)
    if isinstance(tree, (int, float, complex, bool, np.ndarray, np.generic)) or tree is None:
        return tree
    try:
        return np.asarray(tree)
    except Exception as err:  # a tracer, an object, ...
        return NotArray(f"{type(tree).__name__} ({type(err).__name__}: {err})")


class NotArray(str):
    """What a step returned in place of an array that could not become one."""


def _whole(state: dict, case: dict):
    """The student's whole ``value_and_grad(params, batch, cfg[, key])``."""
    import inspect

    fn = state["steps"]["value_and_grad"]
    params, batch, cfg = _inputs((case["params"], case["batch"], case["cfg"]), True)
    if "key" in inspect.signature(fn).parameters:
        import jax

        key = None if case["key"] is None else jax.random.wrap_key_data(case["key"])
        return ("ok", _outputs(fn(params, batch, cfg, key=key)))
    return ("ok", _outputs(fn(params, batch, cfg)))


def _assembled(state: dict, case: dict, done: list):
    """The whole reference pass with the student's finished steps swapped in: ``(J, grads)``."""
    import jax

    from jaxbackprop import backprop, model

    steps = backprop.Steps(
        *(state["steps"][n] if n in done else f for n, f in backprop.REFERENCE_STEPS._asdict().items())
    )
    params, batch = _inputs((case["params"], case["batch"]), True)
    key = None if case["key"] is None else jax.random.wrap_key_data(case["key"])
    with _op_by_op():
        J, grads = backprop.manual_value_and_grad(
            params, batch, case["cfg"].to(model.ModelConfig), key=key, steps=steps
        )
    return ("ok", _outputs((J, grads)))


HANDLERS = {"load": _load, "call": _call, "whole": _whole, "assembled": _assembled}
