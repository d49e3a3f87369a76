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

import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

GRACE_S = 5.0  # beyond the alarm: a child stuck in C code (no Python between bytecodes) is killed
REFERENCE = "jaxbackprop.backprop"  # the module whose steps a student's file must not hand back as its own


class Worker:
    """The grader's handle on the child: ``request(message, timeout)`` -> the child's answer."""

    def __init__(self):
        self._proc = None
        self._conn = None
        self._loaded = None  # the last "load" request: a restarted child imports the student's file again

    def _start(self) -> None:
        down_r, down_w = os.pipe()  # grader -> child
        up_r, up_w = os.pipe()  # child -> grader
        root = str(Path(__file__).resolve().parent.parent)  # this very jaxbackprop, whatever the child's path says
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, JAX_ENABLE_X64="1", PYTHONPATH=path)
        # a step written in jax runs op by op, one small compile per op and shape: kept on disk for the next check
        from jaxbackprop.impl_cache import cache_dir

        env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir() / "xla"))
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
        command = [sys.executable, "-m", "jaxbackprop.impl_worker", str(down_r), str(up_w)]
        # a session of its own: Ctrl-C in the terminal ends the grader, which ends the child
        self._proc = subprocess.Popen(
            command, pass_fds=(down_r, up_w), env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        os.close(down_r), os.close(up_w)
        self._conn = Connection(up_r, writable=False), Connection(down_w, readable=False)

    def request(self, message: tuple, timeout: float):
        """Send ``message``; the child's answer, or ``("error", why)`` when it died or ran past ``timeout``."""
        if message[0] == "load":
            self._loaded = (message, timeout)
        elif self._proc is None or self._proc.poll() is not None:
            if self._loaded is not None:  # the student's module lived in the child that was ended
                self.request(*self._loaded)
        return self._send(message, timeout)

    def _send(self, message: tuple, timeout: float):
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
            why = f"ended the checking process (exit code {code}): os._exit, or a crash in compiled code?"
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
    from jaxbackprop.impl_student import HANDLERS

    signal.signal(signal.SIGALRM, _alarm)
    state: dict = {}
    while True:
        try:
            kind, *args, timeout = receive.recv()
        except (EOFError, OSError):
            return
        send.send(_guarded(timeout, HANDLERS[kind], state, *args))  # impl_student's _load, _call, ...


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
        note = f"raised {type(err).__name__}: {text} ({where(err, state)})"
        if isinstance(err, ValueError) and "read-only" in str(err):  # np.asarray of a jax array is a read-only view
            note += "; np.asarray of a jax array is read-only: use np.array(x) to copy"
        return ("error", note)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def where(err: BaseException, state: dict) -> str:
    """``file:line`` of the deepest frame inside the student's file (or the file)."""
    import traceback

    path = state.get("path", "")
    target = os.path.realpath(state["absolute"]) if path else None
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if os.path.realpath(f.filename) == target]
    return f"{path}:{lines[-1]}" if lines else str(path)


if __name__ == "__main__":  # run as the package's module, so that the alarm's StepTimeout is the one caught
    from jaxbackprop import impl_worker

    impl_worker.serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
