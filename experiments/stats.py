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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95
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
