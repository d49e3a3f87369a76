"""The student's code runs here, in a child process, so that it cannot end, hang or rig the grader.

:class:`Worker` (the grader's side) starts ``python -m jaxbackprop.impl_worker`` once and keeps it:
an edit is graded by the same warm child, which imports the student's file afresh each time. Each
request is answered within its time limit or the child is killed and started again. The child
(:func:`serve`) catches everything the student's code may raise -- ``SystemExit``,
``KeyboardInterrupt``, an alarm after ``timeout`` seconds -- and answers with a one-line error naming
the file and line. What the student prints goes to stderr, never into the grader's channel or its
``--json``. The tolerances live in the grader's process: nothing the student's file sets reaches them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

GRACE_S = 5.0  # beyond the alarm: a child stuck in C code (no Python between bytecodes) is killed
REFERENCE = "jaxbackprop.backprop"  # the module whose steps a student's file must not hand back as its own


class Worker:
    """The grader's handle on the child: ``request(message, timeout)`` -> the child's answer."""

    def __init__(self):
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        down_r, down_w = os.pipe()  # grader -> child
        up_r, up_w = os.pipe()  # child -> grader
        root = str(Path(__file__).resolve().parent.parent)  # this very jaxbackprop, whatever the child's path says
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, JAX_ENABLE_X64="1", PYTHONPATH=path)
        command = [sys.executable, "-m", "jaxbackprop.impl_worker", str(down_r), str(up_w)]
        # a session of its own: Ctrl-C in the terminal ends the grader, which ends the child
        self._proc = subprocess.Popen(
            command, pass_fds=(down_r, up_w), env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        os.close(down_r), os.close(up_w)
        self._conn = Connection(up_r, writable=False), Connection(down_w, readable=False)

    def request(self, message: tuple, timeout: float):
        """Send ``message``; the child's answer, or ``("error", why)`` when it died or ran past ``timeout``."""
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._start()
        receive, send = self._conn
        try:
            send.send((*message, timeout))
            if receive.poll(timeout + GRACE_S):
                return receive.recv()
            why = f"still running after {timeout:g} s (--timeout): an endless loop?"
        except (EOFError, OSError):
            code = self._proc.wait(GRACE_S)
            why = f"ended the checking process (exit code {code}): os._exit or a crash in compiled code?"
        self.close()
        return ("error", why)

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            for end in self._conn:
                end.close()
        self._proc = self._conn = None


# ----------------------------------------------------------------------------- the child


class StepTimeout(BaseException):
    """The alarm: raised inside the student's code, so the traceback says where it was."""


def serve(receive: Connection, send: Connection) -> None:
    """Answer the grader's requests until it closes the channel."""
    os.dup2(2, 1)  # the student's prints go to stderr, whatever writes them
    sys.stdout = sys.stderr
    signal.signal(signal.SIGALRM, _alarm)
    state: dict = {}
    while True:
        try:
            kind, *args, timeout = receive.recv()
        except (EOFError, OSError):
            return
        send.send(_guarded(timeout, HANDLERS[kind], state, *args))


def _alarm(signum, frame):
    raise StepTimeout


def _guarded(timeout: float, handler, state: dict, *args):
    """``handler(state, *args)`` under an alarm; anything it raises becomes ``("error", line)``."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return handler(state, *args)
    except NotImplementedError:
        return ("todo",)
    except StepTimeout as err:
        return (
            "error",
            f"still running after {timeout:g} s (--timeout), stopped at {where(err, state)}: an endless loop?",
        )
    except SystemExit as err:
        return ("error", f"called sys.exit({'' if err.code is None else repr(err.code)}) ({where(err, state)})")
    except BaseException as err:  # KeyboardInterrupt too: the student's code ends nothing here
        text = str(err).strip().splitlines()[0] if str(err).strip() else "-"
        return ("error", f"raised {type(err).__name__}: {text} ({where(err, state)})")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def where(err: BaseException, state: dict) -> str:
    """``file:line`` of the deepest frame inside the student's file (or the file)."""
    import traceback

    path = state.get("path", "")
    target = os.path.realpath(state["absolute"]) if path else None
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if os.path.realpath(f.filename) == target]
    return f"{path}:{lines[-1]}" if lines else str(path)


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

if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
