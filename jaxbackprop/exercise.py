"""The exercise: a skeleton of the backward pass for a student to fill in (``jaxbackprop exercise``).

The skeleton has one function per step of :class:`jaxbackprop.backprop.Steps`, with the reference's
signature, a docstring that says what the step receives and returns and the shapes -- but not the
equation to derive -- and a body that raises ``NotImplementedError``. ``hints=True`` (``jaxbackprop
exercise --hints``) adds, below each docstring's summary, the reference's own derivation.
``jaxbackprop check --impl FILE`` then checks each filled-in step (:mod:`jaxbackprop.impl_check`).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

from jaxbackprop import backprop, files

# the order of the lecture: its own score model s = u^T h first, then the window layer back to E and
# the L2 term; then the softmax head (the lecture leaves it to the homework) and the crf head
ORDER = (
    "score_head_bwd",
    "activation_bwd",
    "linear_bwd",
    "split_windows",
    "scatter_rows",
    "l2_bwd",
    "softmax_bwd",
    "output_layer_bwd",
    "crf_head_bwd",
)
FILENAME = "backprop.py"

HEADER = '''"""My backward pass for the window classifier: the steps jaxbackprop's hand-derived pass is built from.

Written by `jaxbackprop exercise`. Each function below is one step of the backward pass: what it
receives, what it returns, the shapes, and a body that raises NotImplementedError. Deriving each
step is the exercise{hints_line}. Fill the steps in, in any order, and after each one run

    jaxbackprop check --impl {path}

It feeds each of your steps the reference's own inputs on every case of the check matrix, in
float64, and prints per output: bit-equal? within 1e-10? the largest differences and where; then
the first step whose numbers leave the reference, and the mistake when it is a classic one. A
step that still raises NotImplementedError, or that you delete, is done by the reference
meanwhile. `--activation relu --head score` narrows the check while you work.

The model, forward (B windows of n words; d word dimensions, H hidden units, C classes, V words):

    x = [E[w_1]; ...; E[w_n]; F[f_1]; ...]  (B, D)  a window's n word vectors end to end, then its features'
    z = x W^T + b                           (B, H)
    h = f(z)                                (B, H)  f = cfg.activation, unit by unit
    s = u^T h                               (B,)    the lecture's score of a window (the score head):
    J = sum_b w_b max(0, 1 - s_b + s_c,b)           a true window should outscore a corrupted one by 1
  or, to tag the NER classes (the softmax head; the lecture leaves it to the homework):
    logits = h U^T + c                      (B, C)
    J = sum_b w_b CE(y_b, softmax(logits_b))        y_b the one-hot gold class
  or the crf head: a linear-chain CRF over each sentence's tags, the logits of its tokens as emissions.

F is the per-word feature table (Vc, dc): each word also has k small features (its casing
category, its suffix), each a row of F looked up like a word's row of E; their slices follow the
n word slices in x, so D = n d + n k dc (D = n d in a model without features). w_b are the weights
of the mean: they sum to 1, so 1/B each for a plain mean, or a batch's "weights" normalised
(sentences, for the crf head).

The chain of steps, from the loss back to the word vectors (start with the lecture's score head):

    J  --score_head_bwd-->  dJ/du, dJ/dh, dJ/dh_c         or  J --softmax_bwd--> dJ/dlogits
                                                              dJ/dlogits --output_layer_bwd--> dJ/dU, dJ/dc, dJ/dh
    dJ/dh  --activation_bwd-->  delta = dJ/dz
    delta  --linear_bwd-->  dJ/dW, dJ/db, dJ/dx
    dJ/dx  --split_windows-->  dJ/dx_i, one d-vector per word of each window
    dJ/dx_i  --scatter_rows-->  dJ/dE (and dJ/dF from the feature slices)
    l2_bwd: the L2 penalty's gradient, added to W and U (or u)

Shapes: B windows (for the crf head: the S L tokens of S sentences of L). The inputs are float64
jax arrays, read-only: return jax.numpy or numpy arrays of the shapes stated, in float64, and do
not change the inputs (to edit a copy in numpy, np.array(x) -- np.asarray(x) is the read-only array).
"""

import jax
import jax.numpy as jnp

from jaxbackprop import crf  # crf.marginals, crf.pair_marginals: the forward-backward's probabilities
from jaxbackprop import nonlinearities as nl  # nl.apply(name, z, alpha) is f -- f' is yours to write
'''

# What each step receives and returns, and the shapes: the derivation is the student's (``hints`` adds it).
STEP_DOCS = {
    "score_head_bwd": """The lecture's score head, backwards: from J to dJ/du, and to dJ/dh of both windows.

Forward: s = u^T h and s_c = u^T h_c for each window and its corrupted twin, m = 1 - s + s_c (the
margin), J = sum_b w_b max(0, m_b). At the kink, m = 0 exactly, the derivative of max(0, m) is
taken to be 0, as jax's is (the check has a case there).

Args:
  params: holds u (H,).
  residuals: ``(h, h_corrupt, margin, w)``: h, h_corrupt (B, H) hidden vectors of the true and
    the corrupted windows, margin (B,) = 1 - s + s_c, w (B,) the weights of the mean.

Returns:
  ``({"u": (H,)}, dJ/dh (B, H), dJ/dh_corrupt (B, H))``.""",
    "activation_bwd": """The nonlinearity a = f(z), unit by unit, backwards: from dJ/da to delta = dJ/dz.

f is ``cfg.activation``: sigmoid, tanh, hardtanh (clip to [-1, 1]), relu, leaky_relu (slope 0.01
below 0) or prelu (slope ``params["alpha"]`` below 0). At a kink the derivative is jax's: relu'(0) =
0, leaky_relu'(0) = 0.01, prelu'(0) = alpha, hardtanh'(+-1) = 1 (the check has a case at z = 0).

Args:
  params: the parameters (prelu reads its slope ``params["alpha"]``).
  z: (B, H) pre-activations; a: (B, H) activations f(z), before dropout.
  da: dJ/da, (B, H), the upstream gradient.
  cfg: the model config; ``cfg.activation`` names f.

Returns:
  delta = dJ/dz, (B, H).""",
    "linear_bwd": """The layer z = x W^T + b, backwards: from delta = dJ/dz to the gradients of W, b and the input x.

Args:
  params: holds W (H, D) and b (H,).
  x: (B, D) the layer's inputs (the window's word and feature vectors, after dropout).
  delta: dJ/dz, (B, H).

Returns:
  ``({"W": (H, D), "b": (H,)}, dJ/dx (B, D))``.""",
    "split_windows": """Cut dJ/dx into the gradients of each window's n word vectors.

x = [E[w_1]; ...; E[w_n]; features]: the n word vectors of d numbers each, end to end, then the
feature slices (in a model with features; the pass cuts those itself).

Args:
  dx: dJ/dx, (B, D).
  cfg: the model config: n = ``cfg.window``, d = ``cfg.embed_dim``.

Returns:
  dJ/dx_i, (B, n, d): entry [b, i] is the gradient of word i's vector in window b.""",
    "scatter_rows": """From one gradient row per looked-up vector to the gradient of the whole table (E, or F).

The forward pass looked up row ``ids[i]`` of the table for position i.

Args:
  ids: int (N,) the table row each position looked up.
  rows: (N, d) the gradient of each position's looked-up vector.
  num_rows: V, the table's number of rows.

Returns:
  (num_rows, d): the table's gradient; a row that no id names is exactly 0.""",
    "l2_bwd": """The L2 penalty (l2/2)(||W||^2 + ||U||^2) (||u||^2 for the score head), backwards.

Only W and U (or u) are penalised: the biases b and c, alpha, the feature table F and the crf's
T, start and end are not.

Args:
  params: the parameters; cfg: the model config (``cfg.l2``, ``cfg.head``).
  grads: dJ_data/dtheta for every parameter but E: W (H, D), b (H,), U (C, H) and c (C,) or
    u (H,), and any of alpha, F, T, start, end.

Returns:
  the gradients of J = J_data + the penalty, for the same parameters (a new dict).""",
    "softmax_bwd": """The softmax and the cross-entropy, backwards: from J to dJ/dlogits.

Forward: y_hat_b = softmax(logits_b), J = sum_b w_b CE(y_b, y_hat_b), y_b the one-hot gold class.

Args:
  probs: (B, C) y_hat = softmax(logits); labels: int (B,) gold classes; w: (B,) the weights
    of the mean (1/B each for a plain mean).

Returns:
  dJ/dlogits, (B, C).""",
    "output_layer_bwd": """The output layer logits = h U^T + c, backwards: from dJ/dlogits to dJ/dU, dJ/dc and dJ/dh.

Args:
  params: holds U (C, H) and c (C,).
  h: (B, H) the hidden vectors; dlogits: dJ/dlogits, (B, C).

Returns:
  ``({"U": (C, H), "c": (C,)}, dJ/dh (B, H))``.""",
    "crf_head_bwd": """The crf head, backwards: from J to the gradients of T, start, end and the emissions e.

Forward: score(y) = start[y_1] + sum_t e_t[y_t] + sum_t T[y_t-1, y_t] + end[y_last] over a
sentence's real tokens (mask), log Z = logsumexp of score(y) over every tag path y, and
J = sum_s w_s (log Z_s - score_s(gold)). The forward-backward gives the probabilities:
crf.marginals(alpha, beta, log_z, mask) is P(y_t = j) (S, L, C) and
crf.pair_marginals(alpha, beta, emissions, mask, T, log_z) is P(y_t-1 = i, y_t = j) (S, L-1, C, C);
crf.last_token(mask) marks each sentence's last real token.

Args:
  params: holds T (C, C), start (C,), end (C,).
  residuals: ``(emissions, alpha, beta, log_z, labels, mask, w)``: emissions (S, L, C); alpha,
    beta (S, L, C) the forward and backward log-scores; log_z (S,); labels int (S, L); mask
    bool (S, L), true on each sentence's tokens; w (S,) the weights of the mean, 0 for an
    empty sentence.

Returns:
  ``({"T": (C, C), "start": (C,), "end": (C,)}, dJ/de (S, L, C))``, 0 at padding.""",
}


def hint(name: str) -> str:
    """The reference's derivation of a step: its docstring before the Args (and before any doctest)."""
    doc = inspect.getdoc(getattr(backprop, name))
    return doc.split("\nArgs:")[0].split("\n>>>")[0].strip()


def _signature(fn) -> str:
    """``(params, x, delta)``: the step's parameters, without annotations."""
    params = [p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(fn).parameters.values()]
    return str(inspect.Signature(params))


def docstring(name: str, *, hints: bool = False) -> str:
    """The skeleton's docstring of one step: what it receives and returns; ``hints``: and the derivation."""
    doc = STEP_DOCS[name]
    if not hints:
        return doc
    summary, rest = doc.split("\n\n", 1)
    return f"{summary}\n\nHint, the reference's derivation:\n{textwrap.indent(hint(name), '  ')}\n\n{rest}"


def _quoted(doc: str) -> str:
    quote = 'r"""' if "\\" in doc else '"""'  # keep any backslash of the docstring as it is
    return textwrap.indent(f"{quote}{doc}" + ("\n" if "\n" in doc else "") + '"""', " " * 4)


def reference_body(fn) -> str:
    """The source of ``fn``'s body after its docstring, comments included, indented as in a module."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    lines = source.splitlines()
    return "\n".join(lines[node.body[0].end_lineno : node.end_lineno])


def step_source(name: str, *, solved: bool = False, hints: bool = False) -> str:
    """One step of the skeleton: ``def``, its docstring (:func:`docstring`), and ``raise NotImplementedError``
    (or, ``solved``, the reference's own body)."""
    fn = getattr(backprop, name)
    body = reference_body(fn) if solved else f'    raise NotImplementedError("{name}: not implemented yet")'
    return f"def {name}{_signature(fn)}:\n{_quoted(docstring(name, hints=hints))}\n{body}\n"


def skeleton(path: str = FILENAME, *, solved: bool = False, hints: bool = False) -> str:
    """The student's module: the header (how to check it, as ``path``) and every step in :data:`ORDER`.

    Args:
      path: how the header names the file in its ``jaxbackprop check --impl`` line.
      solved: fill each step with the reference's body instead (what a finished exercise
        looks like; the tests check that it passes).
      hints: each docstring also holds the reference's derivation (``jaxbackprop exercise --hints``).

    >>> text = skeleton()
    >>> text.count("raise NotImplementedError"), "def linear_bwd(params, x, delta):" in text
    (9, True)
    """
    hints_line = "; `jaxbackprop exercise --hints` writes a file with the derivations" if not hints else ""
    head = HEADER.format(path=path, hints_line=hints_line)
    return head + "".join("\n\n" + step_source(name, solved=solved, hints=hints) for name in ORDER)


def write_skeleton(out_dir, *, force: bool = False, hints: bool = False) -> tuple[Path, bool]:
    """Write the skeleton to ``out_dir/backprop.py`` atomically; returns ``(path, written)``.

    An existing file that is exactly the fresh skeleton is left as it is (``written`` False).

    Raises:
      ValueError: the file exists with other contents (the student's work, perhaps) and not ``force``.
    """
    path = Path(out_dir) / FILENAME
    text = skeleton(path.as_posix(), hints=hints)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return path, False
    if path.exists() and not force:
        raise ValueError(
            f"{path} already exists and is not the fresh skeleton (your work?): pass --force to replace it, "
            "or choose another --out"
        )
    files.write_text(path, text)
    return path, True
