"""Check a student's backward pass step by step: what ``jaxbackprop check --impl FILE`` runs.

The student's module (``jaxbackprop exercise`` writes a skeleton) defines any of the steps named
in :class:`jaxbackprop.backprop.Steps`, or a whole ``value_and_grad(params, batch, cfg)``. For
each case of the check matrix the reference pass runs once, recording what each step was given
and what it returned; then each of the student's steps is called on exactly those inputs. A
wrong step is therefore found where it is: an earlier mistake neither hides nor causes it. Per
output tensor, in the spirit of makemore's ``cmp``: bit-equal? within tolerance? the largest
absolute and relative differences and where -- and, for the classic mistakes (:mod:`jaxbackprop.mistakes`),
the mistake by name. Steps a module leaves out, or that still raise ``NotImplementedError``, are
done by the reference meanwhile, so a student can work one step at a time.

All numbers are float64 (a scoped ``jax.enable_x64``); the tolerance is the one the project's own
hand-derived pass meets against ``jax.grad`` (:data:`jaxbackprop.gradcheck.MANUAL_VS_AUTODIFF_RTOL`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import inspect
import itertools
import sys
import traceback
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import backprop, check_matrix, model
from jaxbackprop.gradcheck import MANUAL_VS_AUTODIFF_RTOL as RTOL
from jaxbackprop.mistakes import SHAPES, UNNAMED, WHOLE, Context, diagnose, differences
from jaxbackprop.nonlinearities import ACTIVATIONS

STEP_NAMES = backprop.Steps._fields  # in backward order: the head's step first
PARAMS_BACKWARD = ("U", "c", "u", "T", "start", "end", "W", "b", "alpha", "F", "E")  # as a backward pass reaches them
OK, WRONG, ERROR, TODO, REFERENCE = "ok", "WRONG", "ERROR", "todo", "reference"
_loaded = itertools.count()


class Student(NamedTuple):
    """A student's module: its steps (name -> function), its whole value_and_grad (or None), notes for the reader."""

    path: Path
    steps: dict
    value_and_grad: object
    notes: tuple


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One output tensor of one step in one case of the matrix (or, aggregated, in its worst case)."""

    step: str
    tensor: str
    case: str
    status: str
    exact: bool = False
    max_abs: float = float("nan")
    max_rel: float = float("nan")
    worst: tuple = ()
    note: str = ""

    @property
    def shape(self) -> str:
        return SHAPES.get(self.tensor.removeprefix("dJ/d"), "")


@dataclasses.dataclass(frozen=True)
class Report:
    """Every outcome of a check; ``str(report)`` is the table, ``report.passed`` the verdict."""

    path: Path
    outcomes: tuple
    assembled: tuple  # the whole pass run with the student's steps; () when not run
    notes: tuple
    cases: int

    def rows(self) -> list:
        """One :class:`Outcome` per (step, tensor), in backward order: the worst case of each."""
        groups: dict = {}
        for o in self.outcomes:
            groups.setdefault((o.step, o.tensor), []).append(o)
        rows = [_worst(groups[k]) for k in sorted(groups, key=_row_order)]
        return [r for r in rows if not _unpenalised(r) or r.status in (WRONG, ERROR)]

    @property
    def passed(self) -> bool:
        mine = [r for r in self.rows() if r.status != REFERENCE]
        return bool(mine) and all(r.status == OK for r in mine) and all(o.status == OK for o in self.assembled)

    def table(self) -> str:
        return "\n".join(_table_lines(self))

    __str__ = table


def _row_order(key: tuple) -> tuple:
    """Steps in backward order; within a step, call order (sorting is stable) but the lecture's E before
    the feature table F, and a whole value_and_grad's loss, then its gradients in backward order."""
    step, tensor = key
    name = tensor.removeprefix("dJ/d")
    within = ("J", *PARAMS_BACKWARD).index(name) if step == WHOLE else int(name == "F")
    return (*STEP_NAMES, WHOLE).index(step), within


def _unpenalised(row: Outcome) -> bool:
    """An entry l2_bwd passes through unchanged (b, c, F, ...): a row in the table only when it is wrong."""
    return row.step == "l2_bwd" and row.tensor not in ("dJ/dW", "dJ/dU", "dJ/du")


def _worst(outcomes: list) -> Outcome:
    rank = {ERROR: 0, WRONG: 1, TODO: 2, REFERENCE: 3, OK: 4}
    worst = min(outcomes, key=lambda o: (rank[o.status], -np.nan_to_num(o.max_rel, nan=np.inf)))
    failing = sum(o.status in (WRONG, ERROR) for o in outcomes)
    named = [o for o in outcomes if o.status == worst.status and o.note and not o.note.startswith(UNNAMED)]
    told = named[0] if named else worst  # a case where the mistake has a name tells the student more
    note = told.note + (f" [{told.case}; wrong in {failing} of {len(outcomes)} calls]" if failing else "")
    return dataclasses.replace(worst, exact=all(o.exact for o in outcomes), note=note)


# ----------------------------------------------------------------------------- loading the student's file


def load_student(path) -> Student:
    """Import the student's file and find its steps.

    Raises:
      ValueError: naming the file (and line): no such file, a syntax error, an error while
        importing, no step at all, or a step whose signature cannot take the pass's arguments.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (`jaxbackprop exercise --out DIR` writes one to start from)")
    module = _import(path)
    found = {n: getattr(module, n) for n in (*STEP_NAMES, WHOLE) if callable(getattr(module, n, None))}
    if not found:
        raise ValueError(
            f"{path}: defines none of the steps ({', '.join(STEP_NAMES)}) nor {WHOLE}(params, batch, cfg); "
            "`jaxbackprop exercise` writes a file with every step to fill in"
        )
    for name, fn in found.items():
        _check_signature(path, name, fn, getattr(backprop, name, backprop.manual_value_and_grad))
    notes = [_typo_note(path, module, name) for name in sorted(vars(module))]
    # imported from jaxbackprop.backprop: the reference's work, not the student's
    imported = [n for n, fn in found.items() if fn is getattr(backprop, n, None)]
    if imported:
        notes.append(f"{', '.join(imported)}: imported from jaxbackprop.backprop, so counted as the reference")
    steps = {n: fn for n, fn in found.items() if n in STEP_NAMES and n not in imported}
    return Student(path, steps, found.get(WHOLE), tuple(n for n in notes if n))


def _import(path: Path):
    name = f"_jaxbackprop_student_{next(_loaded)}"  # a fresh module each time: a reload sees the edits
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while a class is built
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        text = (err.text or "").strip()
        raise ValueError(f"{path}:{err.lineno}: syntax error: {err.msg}" + (f": {text}" if text else "")) from None
    except Exception as err:  # the student's module-level code: say where it failed
        raise ValueError(f"{_where(err, path)}: importing it raised {type(err).__name__}: {err}") from None
    finally:
        sys.modules.pop(name, None)
    return module


def _check_signature(path, name, fn, reference) -> None:
    wanted = [p.name for p in inspect.signature(reference).parameters.values() if p.default is p.empty]
    try:
        signature = inspect.signature(fn)
    except ValueError:  # a builtin without a signature: its first call will tell
        return
    try:
        signature.bind(*wanted)
    except TypeError:
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", "?")
        raise ValueError(
            f"{path}:{line}: {name}{signature} cannot be called as the pass calls it, {name}({', '.join(wanted)})"
        ) from None


def _typo_note(path, module, name) -> str:
    """A note when the module defines a function whose name is a near miss of a step's."""
    fn = getattr(module, name)
    if not inspect.isfunction(fn) or fn.__module__ != module.__name__ or name in (*STEP_NAMES, WHOLE):
        return ""
    close = difflib.get_close_matches(name, (*STEP_NAMES, WHOLE), n=1, cutoff=0.8)
    return f"{path} defines {name}, which is no step's name: did you mean {close[0]}?" if close else ""


def _where(err: BaseException, path: Path) -> str:
    """``file:line`` of the deepest frame of the traceback inside the student's file (or the file)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f"{path}:{frames[-1].lineno}" if frames else str(path)


# ----------------------------------------------------------------------------- one case of the matrix


def _recorder(calls: list) -> backprop.Steps:
    """The reference steps, each writing down ``(name, args, output)`` of every call."""

    def record(name, fn):
        def step(*args):
            out = fn(*args)
            calls.append((name, args, out))
            return out

        return step

    return backprop.Steps(*(record(n, f) for n, f in zip(STEP_NAMES, backprop.REFERENCE_STEPS)))


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
    if isinstance(like, tuple):
        if not isinstance(out, (tuple, list)) or len(out) != len(like):
            got = f"a {len(out)}-tuple" if isinstance(out, (tuple, list)) else type(out).__name__
            parts = [f"dict {sorted(x)}" if isinstance(x, dict) else f"dJ/d{n}" for x, n in zip(like, [None] + names)]
            raise TypeError(f"{who}returned {got}, expected a {len(like)}-tuple ({', '.join(parts)})")
        flat: dict = {}
        for o, x in zip(out, like):
            flat |= _flatten(o, x, names, who)
        return flat
    return {f"dJ/d{names.pop(0)}": out}


def _call(fn, args, path):
    """``(output, None)``, or ``(None, (status, note))`` when the student's function raised."""
    try:
        return fn(*jax.tree.map(lambda leaf: leaf, args)), None  # fresh dicts: a step cannot edit the next one's
    except NotImplementedError:
        return None, (TODO, "not implemented yet: the reference stood in")
    except Exception as err:
        note = f"raised {type(err).__name__}: {str(err).strip() or '-'} ({_where(err, path)})"
        if isinstance(err, ValueError) and "read-only" in str(err):  # np.asarray of a jax array is a read-only view
            note += "; the inputs are jax arrays, and np.asarray of one is read-only: use np.array(x) to copy"
        return None, (ERROR, note)


def _outcome(got, want, case: str, ctx: Context) -> Outcome:
    try:
        got = np.asarray(got)
    except Exception as err:  # a tracer, an object, ...
        return Outcome(ctx.step, ctx.tensor, case, WRONG, note=f"not an array: {type(err).__name__}: {err}")
    want = np.asarray(want)
    if not np.issubdtype(got.dtype, np.number):
        return Outcome(ctx.step, ctx.tensor, case, WRONG, note=f"not an array of numbers: {got.dtype}")
    if got.shape != want.shape:
        return Outcome(ctx.step, ctx.tensor, case, WRONG, note=diagnose(got, want, ctx))
    max_abs, max_rel, worst = differences(got, want)
    passed = max_rel <= RTOL and got.dtype == np.float64
    note = "" if passed else diagnose(got, want, ctx)
    exact = bool(np.array_equal(got, want))
    return Outcome(ctx.step, ctx.tensor, case, OK if passed else WRONG, exact, max_abs, max_rel, worst, note)


def _step_outcomes(student: Student, name, args, want, case: str, ctx: Context) -> list:
    names = _array_names(name, args, ctx.cfg)
    tensors = list(_flatten(want, want, list(names)))
    fn = student.steps.get(name)
    if fn is None:
        return [Outcome(name, t, case, REFERENCE) for t in tensors]
    got, failure = _call(fn, args, student.path)
    if failure is None:
        try:
            got = _flatten(got, want, list(names), f"{name} ")
        except TypeError as err:
            failure = (ERROR, str(err))
    if failure is not None:
        return [Outcome(name, t, case, failure[0], note=failure[1]) for t in tensors]
    ref = _flatten(want, want, list(names))
    return [_outcome(got[t], ref[t], case, ctx._replace(step=name, tensor=t, args=args)) for t in tensors]


def check_case(student: Student, params, batch, cfg: model.ModelConfig, key=None, case: str = ""):
    """The student's steps (and whole value_and_grad) on one batch, against the reference's.

    Args:
      student: from :func:`load_student`.
      params, batch, cfg, key: float64 parameters and a batch, as for :func:`jaxbackprop.loss`.
      case: names the case in the notes.

    Returns:
      ``(outcomes, (J, grads))``: a list of :class:`Outcome` and the reference's loss and gradients.
    """
    calls: list = []
    J, grads = backprop.manual_value_and_grad(params, batch, cfg, key=key, steps=_recorder(calls))
    ctx = Context(cfg, params, batch)
    outcomes = []
    if student.steps:  # a file with only a whole value_and_grad gets no rows for the steps
        for name, args, want in calls:
            outcomes += _step_outcomes(student, name, args, want, case, ctx)
    if student.value_and_grad is not None:
        outcomes += _whole_outcomes(student, params, batch, cfg, key, case, ctx._replace(step=WHOLE), (J, grads))
    return outcomes, (J, grads)


def _whole_outcomes(student, params, batch, cfg, key, case, ctx, reference) -> list:
    """The student's whole value_and_grad: the loss, then each parameter's gradient in backward order."""
    fn = student.value_and_grad
    if "key" in inspect.signature(fn).parameters:
        fn = lambda *args: student.value_and_grad(*args, key=key)  # noqa: E731
    elif key is not None:  # no dropout then, in the reference too
        reference = backprop.manual_value_and_grad(params, batch, cfg)
    want = {"dJ/dJ": reference[0]} | {f"dJ/d{k}": reference[1][k] for k in PARAMS_BACKWARD if k in params}
    got, failure = _call(fn, (params, batch, cfg), student.path)
    if failure is None:
        try:
            if not (isinstance(got, (tuple, list)) and len(got) == 2):
                raise TypeError(f"{WHOLE} returned {type(got).__name__}, expected (J, grads)")
            got = {"dJ/dJ": got[0]} | _flatten(got[1], {k: None for k in params}, [], f"{WHOLE}: grads ")
        except TypeError as err:
            failure = (ERROR, str(err))
    rename = lambda t: "J" if t == "dJ/dJ" else t  # noqa: E731
    if failure is not None:
        return [Outcome(WHOLE, rename(t), case, failure[0], note=failure[1]) for t in want]
    return [_outcome(got[t], w, case, ctx._replace(tensor=rename(t))) for t, w in want.items()]


def _assembled_outcomes(student, params, batch, cfg, key, case, reference) -> list:
    """The whole pass with the student's finished steps swapped in, against the reference's loss and gradients."""
    steps = backprop.Steps(*(student.steps.get(n, ref) for n, ref in zip(STEP_NAMES, backprop.REFERENCE_STEPS)))
    try:
        J, grads = backprop.manual_value_and_grad(params, batch, cfg, key=key, steps=steps)
    except Exception as err:  # steps that passed one by one may still disagree on what they hand on
        return [Outcome("assembled", "J", case, ERROR, note=f"raised {type(err).__name__}: {err}")]
    ctx = Context(cfg, params, batch, step="assembled")
    pairs = [("J", J, reference[0])] + [(f"dJ/d{k}", grads[k], reference[1][k]) for k in grads]
    return [_outcome(g, w, case, ctx._replace(tensor=t)) for t, g, w in pairs]


# ----------------------------------------------------------------------------- the matrix


def matrix_cases(activations=None, heads=None, seed: int = 0):
    """``(label, cfg, params, batch, key)`` for each case of the check matrix, float64 (iterate under x64)."""
    for activation in activations or ACTIVATIONS:
        for head in heads or check_matrix.MATRIX_HEADS:
            cfg = model.ModelConfig(activation=activation, head=head, **check_matrix.MATRIX_MODEL)
            drawn = check_matrix.check_params(seed, cfg)
            for i, case in enumerate(check_matrix.grader_cases_for(head)):
                params, batch, key = check_matrix.grader_case(case, seed + 1 + i, cfg, drawn)
                params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
                batch = {k: jnp.asarray(v, jnp.float64 if k == "weights" else None) for k, v in batch.items()}
                yield f"{activation} / {head} / {case}", cfg, params, batch, key


def check_impl(path, *, activations=None, heads=None, seed: int = 0) -> Report:
    """Load a student's file and check it on every case of the check matrix (or the chosen activations, heads).

    Everything runs op by op (``jax.disable_jit``), so numpy code works as well as jax.numpy. When none of the student's
    steps is wrong, the whole pass runs once more per case with the finished ones swapped in
    (``backprop.manual_value_and_grad(..., steps=...)``) and its loss and gradients are compared too.

    Returns:
      A :class:`Report`.
    """
    student = load_student(path)
    # op by op: under jit-on-call the crf's scans, whose bodies are fresh closures, would be traced and
    # compiled anew in every case (~1 s each); op by op each primitive compiles once per shape
    with jax.enable_x64(True), jax.disable_jit():
        cases = list(matrix_cases(activations, heads, seed))
        checked = [check_case(student, p, b, cfg, k, label) for label, cfg, p, b, k in cases]
        outcomes = [o for found, _ in checked for o in found]
        steps_of = lambda status: {o.step for o in outcomes if o.status == status and o.step != WHOLE}  # noqa: E731
        done = steps_of(OK) - steps_of(TODO)
        assembled = []
        if done and not steps_of(WRONG) | steps_of(ERROR):
            finished = student._replace(steps={n: f for n, f in student.steps.items() if n in done})
            for (label, cfg, p, b, k), (_, reference) in zip(cases, checked):
                assembled += _assembled_outcomes(finished, p, b, cfg, k, label, reference)
    return Report(student.path, tuple(outcomes), tuple(assembled), student.notes, len(cases))


# ----------------------------------------------------------------------------- the table


def _table_lines(report: Report) -> list:
    rows = report.rows()
    lines = [
        f"{report.path}: your backward steps on {report.cases} cases of the check matrix, fed the reference's inputs",
        f"float64 (eps {np.finfo(np.float64).eps:.1e}); close: max relative error <= {RTOL:g}; exact: bit-equal in "
        "every case",
        *(f"note: {n}" for n in report.notes),
        "",
        f"{'step':<17} {'tensor':<16} {'shape':<10} {'exact':<5} {'close':<5} {'max abs':>8} {'max rel':>8}  "
        f"{'worst at':<9} result",
    ]
    for r in rows:
        if r.status in (OK, WRONG) and np.isfinite(r.max_rel):
            cells = f"{'yes' if r.exact else 'no':<5} {'yes' if r.status == OK else 'NO':<5} "
            worst = ",".join(map(str, r.worst)) if r.max_rel > 0 else ""
            cells += f"{r.max_abs:8.1e} {r.max_rel:8.1e}  {worst or '-':<9}"
        else:
            cells = f"{'-':<5} {'NO' if r.status in (WRONG, ERROR) else '-':<5} {'-':>8} {'-':>8}  {'-':<9}"
        result = "reference (not in your file)" if r.status == REFERENCE else r.status
        lines.append(f"{r.step:<17} {r.tensor:<16} {r.shape:<10} {cells} {result}")
    return lines + [""] + _verdict(report, rows)


def _verdict(report: Report, rows: list) -> list:
    """The first step whose numbers leave the reference, what was right before it, and the verdict."""
    lines = []
    bad: dict = {}  # (step, note) -> tensors: a step that raised says so once, not once per output
    for r in rows:
        if r.status in (WRONG, ERROR):
            bad.setdefault((r.step, r.note), []).append(r)
    if bad:
        (_, note), tensors = next(iter(bad.items()))
        first = tensors[0]
        lines.append(f"first step that leaves the reference: {first.step}. Your {_names(tensors)}: {note}")
        before: dict = {}
        for r in rows[: rows.index(first)]:
            before.setdefault(r.step, []).append(r.tensor if r.status == OK else None)
        right = [f"{step} ({', '.join(ts)})" for step, ts in before.items() if all(ts) and step != first.step]
        same = [r.tensor for r in rows if r.step == first.step and r.status == OK]
        if right:
            lines.append(f"right before it: your {', '.join(right)}")
        if same:
            lines.append(f"right in {first.step} itself: your {', '.join(same)}")
        lines += [f"also wrong: {step}, your {_names(ts)}: {note}" for (step, note), ts in list(bad.items())[1:]]
    todo = [s for s in STEP_NAMES if any(r.step == s and r.status == TODO for r in rows)]
    if todo:
        lines.append(f"not implemented yet (the reference stood in): {', '.join(todo)}")
    failing = [o for o in report.assembled if o.status != OK]
    if report.assembled and not failing:
        worst = max(report.assembled, key=lambda o: o.max_rel)
        lines.append(
            f"your finished steps assembled into the whole backward pass: the loss and every gradient within "
            f"{RTOL:g} of the reference in all {report.cases} cases (largest relative error {worst.max_rel:.1e}, "
            f"{worst.tensor})"
        )
    elif failing:
        lines.append(f"your steps assembled into the whole pass differ: {failing[0].tensor}: {failing[0].note}")
    steps = {s: {r.step for r in rows if r.status == s} for s in (OK, WRONG, ERROR, TODO)}
    right = steps[OK] - steps[WRONG] - steps[ERROR] - steps[TODO]
    return lines + [
        f"{'PASSED' if report.passed else 'FAILED'}: {len(right)} of your steps match the reference, "
        f"{len(steps[WRONG] | steps[ERROR])} do not, {len(steps[TODO])} not implemented yet"
    ]


def _names(rows) -> str:
    return ", ".join(r.tensor for r in rows)
