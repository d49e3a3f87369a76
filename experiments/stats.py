"""Seed noise, stated: a mean with its 95% interval, paired differences, and verdicts that can say "not resolved".

Every training experiment runs several seeds (each seed sets the initialisation, the dropout masks
and the data order), and compares two arms *paired* by seed: arm A and arm B trained from the same
seed share their data order, so the seed-to-seed spread that both arms share cancels in the
difference. The interval is Student's t over the seeds: with n seeds it is
``mean ± t(0.975, n-1) · sd / sqrt(n)``; with one seed there is none (None).

A claim "A beats B" is judged against a bar set before the result is seen (0 unless an experiment
states another, with its reason): **supported** when the whole interval of A - B lies above the
bar, **not supported** when it lies below, and **not resolved** when it straddles it -- the seeds
cannot tell.

Several comparisons in one experiment would each err 5% of the time. Each experiment names its
*primary* comparison(s) in its config before the run; those are judged on their own 95% interval.
Every other comparison is *secondary*: its paired t-test p-value against its bar (:func:`p_value`,
below 0.05 exactly when the 95% interval excludes the bar) is Holm-adjusted over the experiment's
secondary comparisons (:func:`holm`), and it resolves only when the adjusted p is below 0.05. The
intervals shown stay the plain Student-t ones. Where no difference is the finding, a margin set in
advance turns "not resolved" into a result: :func:`equivalent` when the whole interval lies within
± the margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95
ALPHA = 1 - LEVEL  # the family-wise error rate Holm keeps the secondary comparisons at
RESOLVED = {"above": "supported", "below": "not supported", "across": "not resolved"}  # side -> verdict


def interval(values: Sequence[float], level: float = LEVEL) -> dict:
    """Mean, sample standard deviation and the t interval of the mean of ``values`` (one per seed).

    >>> iv = interval([1.0, 2.0, 3.0])
    >>> iv["mean"], iv["n"], round(iv["low"], 4), round(iv["high"], 4)
    (2.0, 3, -0.4841, 4.4841)
    >>> interval([0.5])["low"] is None
    True
    """
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(x):
        raise ValueError("interval needs at least one value")
    out = {"mean": float(x.mean()), "n": len(x), "min": float(x.min()), "max": float(x.max())}
    if len(x) < 2:
        return {**out, "sd": None, "half_width": None, "low": None, "high": None, "level": level}
    sd = float(x.std(ddof=1))
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return {**out, "sd": sd, "half_width": half, "low": out["mean"] - half, "high": out["mean"] + half, "level": level}


def paired(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """The interval of ``a[i] - b[i]`` (seed i of arm A minus seed i of arm B) and how often A won.

    >>> d = paired([0.91, 0.92, 0.93], [0.90, 0.90, 0.94])
    >>> round(d["mean"], 4), d["wins"], d["n"]
    (0.0067, 2, 3)
    """
    if len(a) != len(b):
        raise ValueError(f"paired arms need one value per seed each, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    return {**interval(diffs, level), "wins": sum(d > 0 for d in diffs), "differences": diffs}


def side(iv: dict, bar: float = 0.0) -> str:
    """Where the interval lies against ``bar``: "above", "below" or "across" it (one seed: always "across").

    >>> side({"low": 0.001, "high": 0.004}), side({"low": -0.002, "high": 0.004}), side({"low": None, "high": None})
    ('above', 'across', 'across')
    """
    if iv["low"] is None:
        return "across"  # one seed: no interval, nothing is resolved
    return "above" if iv["low"] > bar else "below" if iv["high"] < bar else "across"


def holds(iv: dict, bar: float = 0.0) -> bool | None:
    """One part of a claim, for :func:`common.verdict_of`: True above the bar, False below, None across it.

    >>> holds({"low": 0.001, "high": 0.004}), holds({"low": -0.003, "high": -0.001}), holds({"low": None, "high": None})
    (True, False, None)
    """
    return {"above": True, "below": False, "across": None}[side(iv, bar)]


def verdict(iv: dict, bar: float = 0.0) -> str:
    """The verdict on "A beats B by more than ``bar``" from the paired interval of A - B."""
    return RESOLVED[side(iv, bar)]


def text(iv: dict, digits: int = 4) -> str:
    """``mean ± half-width`` as a result table prints it (the mean alone with one seed).

    >>> text(interval([1.0, 2.0, 3.0]), 2)
    '2.00 ± 2.48'
    """
    if iv["half_width"] is None:
        return f"{iv['mean']:.{digits}f}"
    return f"{iv['mean']:.{digits}f} ± {iv['half_width']:.{digits}f}"


def p_value(iv: dict, bar: float = 0.0) -> float | None:
    """Two-sided p-value of the paired t-test of "the mean of the differences is ``bar``" (None: one seed).

    It is below ``1 - level`` exactly when the ``level`` interval of :func:`interval` excludes ``bar``.

    >>> round(p_value(interval([1.0, 2.0, 3.0])), 4), p_value(interval([0.5]))
    (0.0742, None)
    """
    if iv["sd"] is None:
        return None
    if iv["sd"] == 0:  # every seed gave the same difference: certain, unless it is the bar itself
        return 1.0 if iv["mean"] == bar else 0.0
    t = (iv["mean"] - bar) / (iv["sd"] / math.sqrt(iv["n"]))
    return float(2 * _scipy_stats.t.sf(abs(t), iv["n"] - 1))


def holm(pvalues: Sequence[float | None]) -> list:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest of m is multiplied by
    m - k + 1, made non-decreasing and capped at 1. A None (no test) stays None and does not count in m.

    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out, running = [None] * len(pvalues), 0.0
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - k) * p))
        out[i] = round(running, 15)  # (m - k) p in floating point: 3 * 0.01 is 0.030000000000000002
    return out


def side_of_p(iv: dict, p: float | None, bar: float = 0.0, alpha: float = ALPHA) -> str:
    """Where a comparison lies against ``bar`` judged by a (Holm-adjusted) p-value: "above" or "below"
    when ``p < alpha`` (by the sign of mean - bar), else "across".

    >>> side_of_p({"mean": 0.2}, 0.01), side_of_p({"mean": -0.2}, 0.01), side_of_p({"mean": 0.2}, 0.2)
    ('above', 'below', 'across')
    """
    if p is None or p >= alpha:
        return "across"
    return "above" if iv["mean"] > bar else "below"


def equivalent(iv: dict, margin: float) -> bool:
    """Whether the whole interval lies within ± ``margin`` of 0: no difference larger than the margin.

    >>> equivalent({"low": -0.002, "high": 0.001}, 0.003), equivalent({"low": -0.002, "high": 0.004}, 0.003)
    (True, False)
    >>> equivalent({"low": None, "high": None}, 0.003)
    False
    """
    return iv["low"] is not None and -margin <= iv["low"] and iv["high"] <= margin
