"""The exercise: a skeleton of the backward pass for a student to fill in (``jaxbackprop exercise``).

The skeleton is generated from the reference steps themselves (:class:`jaxbackprop.backprop.Steps`):
each step's signature and docstring -- shapes and the lecture's equation -- with the body replaced
by ``raise NotImplementedError``, so it cannot drift from the pass it is checked against.
``jaxbackprop check --impl FILE`` then checks each filled-in step (:mod:`jaxbackprop.impl_check`).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

from jaxbackprop import backprop, files

# the order of the lecture: the softmax head, the output layer, f', the outer product, the
# scatter-add into E and the L2 term; then the max-margin score head and the crf head
ORDER = (
    "softmax_bwd",
    "output_layer_bwd",
    "activation_bwd",
    "linear_bwd",
    "scatter_rows",
    "l2_bwd",
    "score_head_bwd",
    "crf_head_bwd",
)
FILENAME = "backprop.py"

HEADER = '''"""My backward pass for the window classifier: the steps jaxbackprop's hand-derived pass is built from.

Written by `jaxbackprop exercise`. Each function below is one step of the backward pass, with its
docstring (shapes, the lecture's equation) and a body that raises NotImplementedError. Fill them
in, in any order, and after each one run

    jaxbackprop check --impl {path}

It feeds each of your steps the reference's own inputs on every case of the check matrix, in
float64, and prints per output: bit-equal? within 1e-10? the largest differences and where; then
the first step whose numbers leave the reference, and the mistake when it is a classic one. A
step that still raises NotImplementedError, or that you delete, is done by the reference
meanwhile. `--activation tanh --head softmax` narrows the check while you work.

Shapes: B windows (for the crf head: the S L tokens of S sentences of L), n words per window, d
word dimensions, D = n d (+ the feature slices) inputs, H hidden units, C classes, V words.
The inputs are float64 jax arrays; return jax.numpy (or numpy) arrays of the shapes stated, in
float64, and do not change the inputs.
"""

import jax
import jax.numpy as jnp

from jaxbackprop import crf  # crf.marginals, crf.pair_marginals: the forward-backward's probabilities
from jaxbackprop import nonlinearities as nl  # nl.derivative(name, z, a, alpha) is f' -- or write your own
'''


def _signature(fn) -> str:
    """``(params, x, delta)``: the step's parameters, without annotations."""
    params = [p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(fn).parameters.values()]
    return str(inspect.Signature(params))


def _docstring(fn) -> str:
    doc = inspect.getdoc(fn)
    quote = 'r"""' if "\\" in doc else '"""'  # keep any backslash of the docstring as it is
    return textwrap.indent(f"{quote}{doc}" + ("\n" if "\n" in doc else "") + '"""', " " * 4)


def reference_body(fn) -> str:
    """The source of ``fn``'s body after its docstring, comments included, indented as in a module."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    lines = source.splitlines()
    return "\n".join(lines[node.body[0].end_lineno : node.end_lineno])


def step_source(name: str, *, solved: bool = False) -> str:
    """One step of the skeleton: ``def``, the reference's docstring, and ``raise NotImplementedError``
    (or, ``solved``, the reference's own body)."""
    fn = getattr(backprop, name)
    body = reference_body(fn) if solved else f'    raise NotImplementedError("{name}: not implemented yet")'
    return f"def {name}{_signature(fn)}:\n{_docstring(fn)}\n{body}\n"


def skeleton(path: str = FILENAME, *, solved: bool = False) -> str:
    """The student's module: the header (how to check it, as ``path``) and every step in :data:`ORDER`.

    Args:
      path: how the header names the file in its ``jaxbackprop check --impl`` line.
      solved: fill each step with the reference's body instead (what a finished exercise
        looks like; the tests check that it passes).

    >>> text = skeleton()
    >>> text.count("raise NotImplementedError"), "def linear_bwd(params, x, delta):" in text
    (8, True)
    """
    return HEADER.format(path=path) + "".join("\n\n" + step_source(name, solved=solved) for name in ORDER)


def write_skeleton(out_dir, *, force: bool = False) -> tuple[Path, bool]:
    """Write the skeleton to ``out_dir/backprop.py`` atomically; returns ``(path, written)``.

    An existing file that is exactly the fresh skeleton is left as it is (``written`` False).

    Raises:
      ValueError: the file exists with other contents (the student's work, perhaps) and not ``force``.
    """
    path = Path(out_dir) / FILENAME
    text = skeleton(path.as_posix())
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return path, False
    if path.exists() and not force:
        raise ValueError(
            f"{path} already exists and is not the fresh skeleton (your work?): pass --force to replace it, "
            "or choose another --out"
        )
    files.write_text(path, text)
    return path, True
