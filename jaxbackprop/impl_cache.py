"""The reference's recorded steps for ``check --impl``, cached on disk so that grading compiles nothing.

For each case of the check matrix (activation x head x case) the reference pass runs once, under
float64 and op by op, writing down what each backward step was given and what it returned, and the
whole pass's loss and gradients. That recording is all a student's steps are compared with, so it is
kept in one ``.npz`` per case under :func:`cache_dir` (``$JAXBACKPROP_CACHE``, else
``$XDG_CACHE_HOME/jaxbackprop``, else ``~/.cache/jaxbackprop``), in a folder named by a hash of the
package's source and the jax and numpy versions: a change to the reference (or to jax) records anew.
Files are written atomically (:func:`jaxbackprop.files.atomic_path`); one that cannot be read is
recorded again, and an unwritable cache only costs the time.

Reading a case needs numpy alone: the model config comes back as a :class:`RecordedConfig`, the
pytrees as dicts, tuples and numpy arrays. Recording imports jax (:func:`record_cases`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
from pathlib import Path

import numpy as np

from jaxbackprop import files

PACKAGE = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
WHOLE = "value_and_grad"  # a student's whole pass, in place of the steps


class RecordedConfig:
    """A model config as recorded: its fields and the values of its properties, read as attributes.

    Stands in for :class:`jaxbackprop.model.ModelConfig` where jax is not imported; ``to(cls)``
    rebuilds the real one.
    """

    def __init__(self, fields: dict, properties: dict):
        object.__setattr__(self, "_fields", dict(fields))
        object.__setattr__(self, "_properties", dict(properties))

    def __getattr__(self, name):
        values = {**self.__dict__.get("_fields", {}), **self.__dict__.get("_properties", {})}
        if name in values:
            return values[name]
        raise AttributeError(f"the model config has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("the model config is frozen")

    def __reduce__(self):
        return RecordedConfig, (self._fields, self._properties)

    def __eq__(self, other):
        return isinstance(other, RecordedConfig) and self._fields == other._fields

    def __hash__(self):
        return hash(tuple(sorted(self._fields.items())))

    def __repr__(self):
        return f"ModelConfig({', '.join(f'{k}={v!r}' for k, v in self._fields.items())})"

    def to(self, cls):
        return cls(**self._fields)


def cache_dir() -> Path:
    """Where recordings live: ``$JAXBACKPROP_CACHE``, ``$XDG_CACHE_HOME/jaxbackprop`` or ``~/.cache/jaxbackprop``."""
    if os.environ.get("JAXBACKPROP_CACHE"):
        return Path(os.environ["JAXBACKPROP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxbackprop"


def fingerprint() -> str:
    """A hash of every source file of the package and of the jax and numpy versions: what a recording depends on."""
    digest = hashlib.sha256()
    for source in sorted(PACKAGE.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    for dist in ("jax", "jaxlib", "numpy"):
        try:
            digest.update(f"{dist}={importlib.metadata.version(dist)}\0".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dist}=-\0".encode())
    return digest.hexdigest()[:16]


def folder() -> Path:
    return cache_dir() / f"impl-{fingerprint()}"


def case_file(label: str, seed: int) -> Path:
    """``tanh-softmax-batch-of-1-seed0.npz`` for the case ``tanh / softmax / batch of 1``."""
    return folder() / (re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + f"-seed{seed}.npz")


# ----------------------------------------------------------------------------- pytrees <-> npz


def encode(tree, arrays: list):
    """A JSON-able description of ``tree``; its arrays are appended to ``arrays``."""
    if isinstance(tree, dict):
        return {"d": {str(k): encode(v, arrays) for k, v in tree.items()}}
    if isinstance(tree, (tuple, list)):
        return {"t" if isinstance(tree, tuple) else "l": [encode(v, arrays) for v in tree]}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return {"v": tree}
    if dataclasses.is_dataclass(tree):  # the model config
        props = [n for n in dir(type(tree)) if isinstance(getattr(type(tree), n), property)]
        return {"c": [dataclasses.asdict(tree), {n: getattr(tree, n) for n in props}]}
    arrays.append(np.asarray(tree))
    return {"a": len(arrays) - 1}


def decode(spec, arrays):
    kind, value = next(iter(spec.items()))
    if kind == "d":
        return {k: decode(v, arrays) for k, v in value.items()}
    if kind in ("t", "l"):
        items = [decode(v, arrays) for v in value]
        return tuple(items) if kind == "t" else items
    if kind == "c":
        return RecordedConfig(*value)
    return value if kind == "v" else arrays[value]


def save(path: Path, tree) -> None:
    """``tree`` to ``path`` atomically; an unwritable cache is let be (it only costs the time)."""
    arrays: list = []
    spec = json.dumps(encode(tree, arrays))
    try:
        with files.atomic_path(path) as tmp, open(tmp, "wb") as stream:  # a stream: savez adds no ".npz"
            np.savez(stream, __tree__=np.array(spec), **{f"a{i}": a for i, a in enumerate(arrays)})
    except OSError:
        pass


def load(path: Path):
    """The tree :func:`save` wrote, or None when there is none (or it cannot be read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = [data[f"a{i}"] for i in range(len(data.files) - 1)]
            return decode(json.loads(str(data["__tree__"])), arrays)
    except (OSError, ValueError, KeyError, EOFError):
        return None


# ----------------------------------------------------------------------------- what the grader needs


def manifest() -> dict:
    """The step names, their signatures and the matrix's axes, as the reference defines them (recorded once).

    Not the tolerance: the grader reads that from its own import (:data:`jaxbackprop.mistakes.RTOL`),
    never from a file the student's code could write."""
    path = folder() / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    import inspect

    from jaxbackprop import backprop, check_matrix
    from jaxbackprop.nonlinearities import ACTIVATIONS

    def required(fn) -> list:
        return [p.name for p in inspect.signature(fn).parameters.values() if p.default is p.empty]

    heads = list(check_matrix.MATRIX_HEADS)
    found = {
        "steps": list(backprop.Steps._fields),
        "activations": list(ACTIVATIONS),
        "heads": heads,
        "cases": {h: list(check_matrix.grader_cases_for(h)) for h in heads},
        "signatures": {n: required(getattr(backprop, n)) for n in backprop.Steps._fields},
    }
    found["signatures"][WHOLE] = required(backprop.manual_value_and_grad)
    try:
        files.write_text(path, json.dumps(found, indent=1))
    except OSError:
        pass
    return found


def cases(labels: list, seed: int = 0, memo: dict | None = None) -> list:
    """The recorded cases named by ``labels`` (``"tanh / softmax / batch of 1"``): from ``memo``, the
    disk, or recorded now (and saved) -- only the missing ones are recorded."""
    memo = {} if memo is None else memo
    for label in labels:
        if (label, seed) not in memo:
            found = load(case_file(label, seed))
            if found is not None:
                memo[label, seed] = found
    missing = [label for label in labels if (label, seed) not in memo]
    for label, recorded in zip(missing, record_cases(missing, seed)):
        save(case_file(label, seed), recorded)
        arrays: list = []
        memo[label, seed] = decode(encode(recorded, arrays), arrays)  # as read from the disk: numpy only
    return [memo[label, seed] for label in labels]


def record_cases(labels: list, seed: int = 0) -> list:
    """Run the reference pass on each case, recording every step call: a list of plain trees (jax imported here)."""
    if not labels:
        return []
    import jax
    import jax.numpy as jnp

    from jaxbackprop import backprop, check_matrix, model

    out = []
    # op by op: under jit-on-call the crf's scans, whose bodies are fresh closures, would be traced and
    # compiled anew in every case (~1 s each); op by op each primitive compiles once per shape
    with jax.enable_x64(True), jax.disable_jit():
        for label in labels:
            activation, head, case = label.split(" / ")
            cfg = model.ModelConfig(activation=activation, head=head, **check_matrix.MATRIX_MODEL)
            i = check_matrix.grader_cases_for(head).index(case)
            params, batch, key = check_matrix.grader_case(case, seed + 1 + i, cfg, check_matrix.check_params(seed, cfg))
            params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
            batch = {k: jnp.asarray(v, jnp.float64 if k == "weights" else None) for k, v in batch.items()}
            calls: list = []
            J, grads = backprop.manual_value_and_grad(params, batch, cfg, key=key, steps=_recorder(calls))
            tree = {"label": label, "cfg": cfg, "params": params, "batch": batch, "J": J, "grads": grads}
            tree["calls"] = [[name, args, result] for name, args, result in calls]
            tree["key"] = None if key is None else jax.random.key_data(key)
            if key is not None:  # for a student's whole value_and_grad that takes no key: no dropout then
                tree["J_nokey"], tree["grads_nokey"] = backprop.manual_value_and_grad(params, batch, cfg)
            out.append(tree)
    return out


def _recorder(calls: list):
    """The reference steps, each writing down ``(name, args, output)`` of every call."""
    from jaxbackprop import backprop

    def record(name, fn):
        def step(*args):
            result = fn(*args)
            calls.append((name, args, result))
            return result

        return step

    return backprop.Steps(*(record(n, f) for n, f in zip(backprop.Steps._fields, backprop.REFERENCE_STEPS)))
