"""Check a student's backward pass step by step: what ``jaxbackprop check --impl FILE`` runs.

The student's module (``jaxbackprop exercise`` writes a skeleton) defines any of the steps named
in :class:`jaxbackprop.backprop.Steps`, or a whole ``value_and_grad(params, batch, cfg)``. For
each case of the check matrix the reference pass has run once, recording what each step was given
and what it returned (:mod:`jaxbackprop.impl_cache` keeps that on disk, so grading compiles
nothing); each of the student's steps is called on exactly those inputs. A wrong step is therefore
found where it is: an earlier mistake neither hides nor causes it. Per output tensor, in the spirit
of makemore's ``cmp``: bit-equal? within tolerance? the largest absolute and relative differences and
where -- and, for the classic mistakes (:mod:`jaxbackprop.mistakes`), the mistake by name.

The student's code runs in a child process (:mod:`jaxbackprop.impl_worker`): ``sys.exit``, an
endless loop or a patched tolerance there changes nothing here. The grade
(:mod:`jaxbackprop.impl_report`) is honest: PASSED only when every step the matrix calls is the
student's own and right; steps not implemented or not in the file make it INCOMPLETE.

In-process use (a notebook, a test, an editor hook) -- the first call starts the child and reads or
records the reference; later calls reuse both and answer an edit in well under a second::

    from jaxbackprop import impl_check
    report = impl_check.check_impl("mine/backprop.py", heads=["softmax"], steps=["linear_bwd"])
    print(report.table())      # the table, the verdict and the summary line
    report.grade               # "PASSED", "FAILED" or "INCOMPLETE"; report.exit_code: 0, 1 or 5
    report.as_json()           # per step: status, max abs/rel error, worst index, the mistake; totals
"""

from __future__ import annotations

import atexit
import dataclasses
import difflib
from pathlib import Path

import numpy as np

from jaxbackprop import impl_cache, mistakes
from jaxbackprop.impl_report import ERROR, NOT_OWN, OK, PARAMS_BACKWARD, REFERENCE, TODO, WRONG, Outcome, Report
from jaxbackprop.impl_student import NotArray
from jaxbackprop.impl_worker import Worker
from jaxbackprop.mistakes import WHOLE

DEFAULT_TIMEOUT_S = 10.0
_worker: Worker | None = None
_memo: dict = {}  # recorded cases read once per process


def shared_worker() -> Worker:
    """The one child process this process grades in, started on first use and ended at exit."""
    global _worker
    if _worker is None:
        _worker = Worker()
        atexit.register(_worker.close)
    return _worker


def check_impl(
    path,
    *,
    activations=None,
    heads=None,
    steps=None,
    seed: int = 0,
    timeout: float = DEFAULT_TIMEOUT_S,
    assembled: bool = False,
    worker: Worker | None = None,
) -> Report:
    """Check a student's file on the check matrix, or on the chosen activations, heads and steps.

    Args:
      path: the student's Python file.
      activations, heads: narrow the matrix (default: all of it).
      steps: only these steps' rows (default: every step); the others count as not checked.
      seed: seeds the matrix's parameters and batches.
      timeout: seconds one call of the student's code may take; past it, the call is an error.
      assembled: when no step is wrong, also run the whole pass with the student's finished
        steps swapped in (``backprop.manual_value_and_grad(..., steps=...)``; this compiles JAX ops).
      worker: the child process to run the student's code in (default: :func:`shared_worker`).

    Returns:
      A :class:`jaxbackprop.impl_report.Report`.

    Raises:
      ValueError: one line naming the file (and line): not a file, a syntax error, an error while
        importing it, no step at all, a step whose signature does not fit; or nothing to check.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give your Python file (`jaxbackprop exercise` writes backprop.py)")
    if not path.is_file():
        raise ValueError(f"{path}: no such file (`jaxbackprop exercise --out DIR` writes one to start from)")
    manifest = impl_cache.manifest()
    worker = worker or shared_worker()
    student = _load(worker, path, manifest, timeout)
    labels = [
        f"{a} / {h} / {c}"
        for a in activations or manifest["activations"]
        for h in heads or manifest["heads"]
        for c in manifest["cases"][h]
    ]
    cases = impl_cache.cases(labels, seed, _memo)
    chosen = set(steps or manifest["steps"])
    called = {name for case in cases for name, _, _ in case["calls"]} & chosen
    if not called and WHOLE not in student["mine"]:
        raise ValueError(f"nothing to check: {', '.join(sorted(chosen))} is not called on this part of the matrix")
    grader = _Grader(worker, student, mistakes.RTOL, timeout)
    outcomes = []
    for case in cases:
        if student["steps"] or student["not_own"]:  # a file with only a whole value_and_grad: no step rows
            outcomes += [
                o for name, args, want in case["calls"] if name in chosen for o in grader.step(case, name, args, want)
            ]
        if WHOLE in student["found"]:
            outcomes += grader.whole(case)
    report = Report(
        path, tuple(outcomes), (), tuple(student["notes"]), len(cases), manifest, frozenset(called), mistakes.RTOL
    )
    done = report.steps_done()
    if assembled and done and not report.failing():
        runs = [grader.assembled(case, sorted(done)) for case in cases]
        report = dataclasses.replace(report, assembled=tuple(o for run in runs for o in run))
    return report


def _load(worker: Worker, path: Path, manifest: dict, timeout: float) -> dict:
    """The student's file, imported in the child: which steps it defines and which are really its own."""
    signatures = manifest["signatures"]
    answer = worker.request(("load", str(path), str(path.resolve()), signatures), timeout)
    if answer[0] != "loaded":
        raise ValueError(answer[1] if answer[0] == "unusable" else f"{path}: importing it {answer[1]}")
    info = answer[1]
    found = [n for n in info["found"] if n in signatures]
    if not found:
        raise ValueError(
            f"{path}: defines none of the steps ({', '.join(manifest['steps'])}) nor {WHOLE}(params, batch, cfg); "
            "`jaxbackprop exercise` writes a file with every step to fill in"
        )
    notes, not_own = [], {}
    for name in sorted(info["functions"]):
        close = difflib.get_close_matches(name, list(signatures), n=1, cutoff=0.8)
        if name not in signatures and close and close[0] not in found:
            line = info["functions"][name]
            notes.append(
                f"{path}:{line} defines {name}, which is no step's name: did you mean {close[0]}? (not counted)"
            )
    for name, origin in info["foreign"].items():
        not_own[name] = f"{name} is imported from {origin}: the reference's work, not yours"
    if info["leaning"]:
        notes.append(f"{path} {info['leaning']}: none of its steps counts as your own work")
        not_own |= {n: f"your file {info['leaning']}: counted as the reference's work" for n in found}
    mine = [n for n in found if n not in not_own]
    return {
        "found": found,
        "mine": mine,
        "steps": [n for n in mine if n != WHOLE],
        "not_own": not_own,
        "notes": notes,
        "takes_key": info["takes_key"],
    }


class _Grader:
    """Calls the student's code in the child and compares each answer with the recording, here."""

    def __init__(self, worker: Worker, student: dict, rtol: float, timeout: float):
        self.worker, self.student, self.rtol, self.timeout = worker, student, rtol, timeout
        self.given_up: dict = {}  # step -> the note of a call that timed out or killed the child: not called again

    def step(self, case: dict, name: str, args, want) -> list:
        label = case["label"]
        names = _array_names(name, args, case["cfg"])
        tensors = list(_flatten(want, want, list(names)))
        if name in self.student["not_own"]:
            return [Outcome(name, t, label, NOT_OWN, note=self.student["not_own"][name]) for t in tensors]
        if name not in self.student["steps"]:
            return [Outcome(name, t, label, REFERENCE) for t in tensors]
        answer = self.given_up.get(name) or self.worker.request(("call", name, args), self.timeout)
        if answer[0] == "error" and ("--timeout" in answer[1] or "ended the checking process" in answer[1]):
            self.given_up[name] = ("error", answer[1].split(" [")[0] + " [not called again]")
        failure = _failure(answer)
        if failure is None:
            try:
                got = _flatten(answer[1], want, list(names), f"{name} ")
            except TypeError as err:
                failure = (ERROR, str(err))
        if failure is not None:
            return [Outcome(name, t, label, failure[0], note=failure[1]) for t in tensors]
        ref = _flatten(want, want, list(names))
        context = dict(case=case, step=name, args=args)
        return [self.compare(got[t], ref[t], t, **context) for t in tensors]

    def whole(self, case: dict) -> list:
        """The student's whole value_and_grad: the loss, then each parameter's gradient in backward order."""
        label, params = case["label"], case["params"]
        J, grads = case["J"], case["grads"]
        if case["key"] is not None and not _takes_key(self.student):
            J, grads = case["J_nokey"], case["grads_nokey"]  # no dropout then, in the reference too
        want = {"J": J} | {f"dJ/d{k}": grads[k] for k in PARAMS_BACKWARD if k in params}
        if WHOLE in self.student["not_own"]:
            return [Outcome(WHOLE, t, label, NOT_OWN, note=self.student["not_own"][WHOLE]) for t in want]
        answer = self.worker.request(("whole", case), self.timeout)
        failure = _failure(answer)
        if failure is None:
            got = answer[1]
            try:
                if not (isinstance(got, (tuple, list)) and len(got) == 2):
                    raise TypeError(f"{WHOLE} returned {type(got).__name__}, expected (J, grads)")
                got = {"J": got[0]} | _flatten(got[1], {k: None for k in params}, [], f"{WHOLE}: grads ")
            except TypeError as err:
                failure = (ERROR, str(err))
        if failure is not None:
            return [Outcome(WHOLE, t, label, failure[0], note=failure[1]) for t in want]
        return [self.compare(got[t], w, t, case=case, step=WHOLE) for t, w in want.items()]

    def assembled(self, case: dict, done: list) -> list:
        answer = self.worker.request(("assembled", case, done), self.timeout * 10)
        if answer[0] != "ok":  # steps right one by one may still disagree on what they hand on
            return [Outcome("assembled", "J", case["label"], ERROR, note=answer[1])]
        J, grads = answer[1]
        pairs = [("J", J, case["J"])] + [(f"dJ/d{k}", grads[k], case["grads"][k]) for k in grads]
        return [self.compare(g, w, t, case=case, step="assembled") for t, g, w in pairs]

    def compare(self, got, want, tensor: str, *, case: dict, step: str, args=()) -> Outcome:
        """One tensor against the reference's: right within ``rtol`` and float64, or wrong and why."""
        label = case["label"]
        wrong = lambda note: Outcome(step, tensor, label, WRONG, note=note)  # noqa: E731
        if isinstance(got, NotArray):
            return wrong(f"not an array: {got}")
        got, want = np.asarray(got), np.asarray(want)
        if got.dtype.kind in "iub":
            return wrong(
                f"your {tensor} has dtype {got.dtype}; expected {want.dtype} -- integer arithmetic? "
                "(start from a float array: np.zeros(shape), or x.astype(float))"
            )
        if not np.issubdtype(got.dtype, np.number):
            return wrong(f"not an array of numbers: {got.dtype}")
        ctx = mistakes.Context(case["cfg"], case["params"], case["batch"], step, tensor, args)
        if got.shape != want.shape:
            return dataclasses.replace(wrong(mistakes.diagnose(got, want, ctx)), got=got, want=want)
        max_abs, max_rel, worst = mistakes.differences(got, want)
        passed = max_rel <= self.rtol and got.dtype == np.float64
        note = "" if passed else mistakes.diagnose(got, want, ctx)
        exact = bool(np.array_equal(got, want))
        return Outcome(step, tensor, label, OK if passed else WRONG, exact, max_abs, max_rel, worst, note, got, want)


def _takes_key(student: dict) -> bool:
    return student["takes_key"]


def _failure(answer) -> tuple | None:
    """``(status, note)`` when the student's code did not return, else None."""
    if answer[0] == "todo":
        return (TODO, "not implemented yet: the reference stood in")
    if answer[0] == "reference":
        return (NOT_OWN, f"your step {answer[1]}: counted as the reference's work")
    if answer[0] == "error":
        return (ERROR, answer[1])
    return None


def _array_names(name: str, args, cfg) -> list:
    """Names of the arrays a step returns, in order (a dict of gradients is named by its keys)."""
    if name == "scatter_rows":  # called for E and, with features, for their table F
        return ["E" if args[2] == cfg.vocab_size else "F"]
    arrays = {"softmax_bwd": ["logits"], "score_head_bwd": ["h", "h_corrupt"], "crf_head_bwd": ["e"]}
    arrays |= {"output_layer_bwd": ["h"], "activation_bwd": ["z"], "linear_bwd": ["x"], "split_windows": ["x_i"]}
    return arrays.get(name, [])


def _flatten(out, like, names: list, who: str = "") -> dict:
    """``{"dJ/dW": array, ...}`` from a step's output, which must be shaped like the reference's ``like``.

    Raises:
      TypeError: the containers differ from the reference's; says what was expected.
    """
    if isinstance(like, dict):
        if not isinstance(out, dict) or set(out) != set(like):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise TypeError(f"{who}returned {got}, expected a dict with keys {sorted(like)}")
        return {f"dJ/d{k}": out[k] for k in like}
    if isinstance(like, (tuple, list)):
        if not isinstance(out, (tuple, list)) or len(out) != len(like):
            got = f"a {len(out)}-tuple" if isinstance(out, (tuple, list)) else type(out).__name__
            parts = [f"dict {sorted(x)}" if isinstance(x, dict) else f"dJ/d{n}" for x, n in zip(like, [None] + names)]
            raise TypeError(f"{who}returned {got}, expected a {len(like)}-tuple ({', '.join(parts)})")
        flat: dict = {}
        for o, x in zip(out, like):
            flat |= _flatten(o, x, names, who)
        return flat
    return {f"dJ/d{names.pop(0) if names else 'out'}": out}  # a step this module does not know: its output
