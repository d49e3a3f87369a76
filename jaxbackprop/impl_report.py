"""The grade of ``check --impl``: the table of outcomes, the verdict, the summary, ``--json`` and ``--show``.

Grades and exit codes (a CI-graded course reads the code, a grader the ``--json``):

* ``PASSED`` (0): every step the checked part of the matrix calls is in the file, the student's own
  (not imported from or forwarding to the reference) and within tolerance, in float64, in every case;
* ``FAILED`` (1): a step is wrong, raises, runs past ``--timeout``, or is the reference's work;
* ``INCOMPLETE`` (5): nothing is wrong, but a step is not implemented yet or not in the file;
* (2: the file cannot be checked at all -- a one-line error, raised before any report.)

Steps the narrowed matrix never calls (``--head softmax`` leaves out the score and crf heads' steps,
``--step`` all but the named ones) are *not checked*, and the summary names them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxbackprop.mistakes import RTOL, SHAPES, UNNAMED, WHOLE

OK, WRONG, ERROR, TODO, REFERENCE, NOT_OWN = "ok", "WRONG", "ERROR", "todo", "reference", "not yours"
PARAMS_BACKWARD = ("U", "c", "u", "T", "start", "end", "W", "b", "alpha", "F", "E")  # as a backward pass reaches them
# a step's status over the whole (narrowed) matrix
RIGHT, STEP_WRONG, NOT_IMPLEMENTED, ABSENT = "right", "wrong", "not implemented", "not in your file"
NOT_CHECKED = "not checked"
EXIT = {"PASSED": 0, "FAILED": 1, "INCOMPLETE": 5}


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
    got: object = dataclasses.field(default=None, repr=False, compare=False)
    want: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> str:
        return SHAPES.get(self.tensor.removeprefix("dJ/d"), "")


@dataclasses.dataclass(frozen=True)
class Report:
    """Every outcome of a check; ``str(report)`` is the table, ``report.grade`` and ``report.exit_code`` the verdict."""

    path: Path
    outcomes: tuple
    assembled: tuple  # the whole pass run with the student's steps; () when not run
    notes: tuple
    cases: int
    manifest: dict = dataclasses.field(repr=False, default_factory=dict)
    checked: frozenset = frozenset()  # the steps this part of the matrix calls (and --step chose)
    rtol: float = RTOL  # "close": the largest relative error allowed

    def rows(self) -> list:
        """One :class:`Outcome` per (step, tensor), in backward order: the worst case of each."""
        groups: dict = {}
        for o in self.outcomes:
            groups.setdefault((o.step, o.tensor), []).append(o)
        rows = [_worst(groups[k]) for k in sorted(groups, key=self._row_order)]
        return [r for r in rows if not _unpenalised(r) or r.status in (WRONG, ERROR)]

    def _row_order(self, key: tuple) -> tuple:
        """Steps in backward order; within a step, call order but the lecture's E before the feature
        table F, and a whole value_and_grad's loss, then its gradients in backward order."""
        step, tensor = key
        name = tensor.removeprefix("dJ/d")
        within = ("J", *PARAMS_BACKWARD).index(name) if step == WHOLE else int(name == "F")
        return (*self.manifest["steps"], WHOLE).index(step), within

    def step_status(self) -> dict:
        """Each graded step (in backward order) -> right, wrong, not yours, not implemented, not in your file,
        not checked. A file holding only a whole value_and_grad is graded on it alone."""
        seen: dict = {}
        for o in self.outcomes:
            seen.setdefault(o.step, set()).add(o.status)
        steps = list(self.manifest["steps"]) if set(seen) - {WHOLE} else []
        status = {}
        for step in steps + ([WHOLE] if WHOLE in seen else []):
            found = seen.get(step, set())
            if step != WHOLE and step not in self.checked:
                status[step] = NOT_CHECKED
            elif found & {WRONG, ERROR}:
                status[step] = STEP_WRONG
            else:
                order = ((NOT_OWN, NOT_OWN), (TODO, NOT_IMPLEMENTED), (REFERENCE, ABSENT))
                status[step] = next((s for o, s in order if o in found), RIGHT)
        return status

    def steps_done(self) -> set:
        return {s for s, status in self.step_status().items() if status == RIGHT and s != WHOLE}

    def failing(self) -> bool:
        return any(s in (STEP_WRONG, NOT_OWN) for s in self.step_status().values())

    @property
    def grade(self) -> str:
        status = set(self.step_status().values())
        if status & {STEP_WRONG, NOT_OWN} or any(o.status != OK for o in self.assembled):
            return "FAILED"
        return "INCOMPLETE" if status & {NOT_IMPLEMENTED, ABSENT} or RIGHT not in status else "PASSED"

    @property
    def exit_code(self) -> int:
        return EXIT[self.grade]

    @property
    def passed(self) -> bool:
        return self.grade == "PASSED"

    def table(self) -> str:
        return "\n".join(_table_lines(self))

    __str__ = table

    def summary(self) -> str:
        """``INCOMPLETE: 1 right, 0 wrong, 5 not implemented, 2 not in your file (of 8 steps); not checked: ...``"""
        status = self.step_status()
        count = lambda s: sum(v == s for v in status.values())  # noqa: E731
        counts = f"{count(RIGHT)} right, {count(STEP_WRONG)} wrong"
        counts += f", {count(NOT_OWN)} not yours" if count(NOT_OWN) else ""
        counts += f", {count(NOT_IMPLEMENTED)} not implemented, {count(ABSENT)} not in your file"
        unchecked = [s for s, v in status.items() if v == NOT_CHECKED]
        tail = f"; not checked (not called on this part of the matrix): {', '.join(unchecked)}" if unchecked else ""
        return f"{self.grade}: {counts} (of {len(status) - len(unchecked)} steps checked){tail}"

    def as_json(self) -> str:
        """The report for a grader: per step its status and per tensor its worst case; totals; the exit code."""
        status = self.step_status()
        steps = {s: {"status": v, "tensors": []} for s, v in status.items()}
        for r in self.rows():
            entry = {"tensor": r.tensor, "status": r.status, "exact": r.exact, "case": r.case}
            entry |= {"max_abs": _number(r.max_abs), "max_rel": _number(r.max_rel), "worst": list(r.worst)}
            entry["mistake"] = r.note or None
            steps.setdefault(r.step, {"status": None, "tensors": []})["tensors"].append(entry)
        totals = {s: sum(v == s for v in status.values()) for s in (RIGHT, STEP_WRONG, NOT_OWN, NOT_IMPLEMENTED)}
        totals |= {s: sum(v == s for v in status.values()) for s in (ABSENT, NOT_CHECKED)}
        body = {"file": str(self.path), "grade": self.grade, "exit_code": self.exit_code, "cases": self.cases}
        body |= {"rtol": self.rtol, "totals": totals, "steps": steps, "notes": list(self.notes)}
        body["assembled"] = None if not self.assembled else all(o.status == OK for o in self.assembled)
        return json.dumps(body, indent=1)

    def show(self, tensor: str) -> str:
        """Expected vs yours for one tensor (``dJ/dW`` or ``dW`` or ``W``), at its worst case."""
        name = tensor.removeprefix("dJ/").removeprefix("d") if tensor not in SHAPES else tensor
        rows = [r for r in self.rows() if r.tensor.removeprefix("dJ/d") in (name, tensor)]
        rows = sorted([r for r in rows if r.want is not None], key=lambda r: r.status == OK)
        if not rows:
            return f"--show {tensor}: no output of your steps by that name was compared (try dW, dx, dlogits)"
        r = rows[0]
        fmt = _compact
        at = f", worst at [{','.join(map(str, r.worst))}]" if r.worst else ""
        lines = [
            f"{r.tensor} of {r.step}, case {r.case}{at}: {r.status}",
            "expected:",
            fmt(r.want),
            "yours:",
            fmt(r.got),
        ]
        if np.shape(r.got) == np.shape(r.want):
            lines += ["yours - expected:", fmt(np.asarray(r.got, np.float64) - np.asarray(r.want, np.float64))]
        return "\n".join(lines)


def _compact(a) -> str:
    return np.array2string(np.asarray(a), precision=4, suppress_small=True, threshold=80, max_line_width=110)


def _number(x: float):
    return None if x is None or not np.isfinite(x) else float(x)


def _unpenalised(row: Outcome) -> bool:
    """An entry l2_bwd passes through unchanged (b, c, F, ...): a row in the table only when it is wrong."""
    return row.step == "l2_bwd" and row.tensor not in ("dJ/dW", "dJ/dU", "dJ/du")


def _worst(outcomes: list) -> Outcome:
    rank = {ERROR: 0, WRONG: 1, NOT_OWN: 2, TODO: 3, REFERENCE: 4, OK: 5}
    worst = min(outcomes, key=lambda o: (rank[o.status], -np.nan_to_num(o.max_rel, nan=np.inf)))
    failing = sum(o.status in (WRONG, ERROR) for o in outcomes)
    named = [o for o in outcomes if o.status == worst.status and o.note and not o.note.startswith(UNNAMED)]
    told = named[0] if named else worst  # a case where the mistake has a name tells the student more
    note = told.note + (f" [{told.case}; wrong in {failing} of {len(outcomes)} calls]" if failing else "")
    return dataclasses.replace(worst, exact=all(o.exact for o in outcomes), note=note)


def _table_lines(report: Report) -> list:
    rows = report.rows()
    rtol = report.rtol
    lines = [
        f"{report.path}: your backward steps on {report.cases} cases of the check matrix, fed the reference's inputs",
        f"float64 (eps {np.finfo(np.float64).eps:.1e}); close: max relative error <= {rtol:g}; exact: bit-equal in "
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
            cells = f"{'-':<5} {'NO' if r.status in (WRONG, ERROR, NOT_OWN) else '-':<5} {'-':>8} {'-':>8}  {'-':<9}"
        result = "reference (not in your file)" if r.status == REFERENCE else r.status
        lines.append(f"{r.step:<17} {r.tensor:<16} {r.shape:<10} {cells} {result}")
    return lines + [""] + _verdict(report, rows)


def _verdict(report: Report, rows: list) -> list:
    """The first step whose numbers leave the reference, what was right before it, and the summary."""
    lines = []
    bad: dict = {}  # (step, note) -> tensors: a step that raised says so once, not once per output
    for r in rows:
        if r.status in (WRONG, ERROR, NOT_OWN):
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
    status = report.step_status()
    for what in (NOT_IMPLEMENTED, ABSENT):
        names = [s for s, v in status.items() if v == what]
        if names:
            lines.append(f"{what} (the reference stood in): {', '.join(names)}")
    failing = [o for o in report.assembled if o.status != OK]
    if report.assembled and not failing:
        worst = max(report.assembled, key=lambda o: o.max_rel)
        lines.append(
            f"your finished steps assembled into the whole backward pass: the loss and every gradient within "
            f"{report.rtol:g} of the reference in all {report.cases} cases (largest relative error "
            f"{worst.max_rel:.1e}, {worst.tensor})"
        )
    elif failing:
        lines.append(f"your steps assembled into the whole pass differ: {failing[0].tensor}: {failing[0].note}")
    return lines + [report.summary()]


def _names(rows) -> str:
    return ", ".join(r.tensor for r in rows)
