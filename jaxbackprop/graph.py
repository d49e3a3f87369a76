"""A micrograd-sized reverse-mode engine over arrays: the lecture's computation graph, run.

This is the only mutable code in the package. A :class:`Node` holds a ``value``, a ``grad``
(same shape, filled in place by :meth:`Node.backward`), its ``parents`` and the ``op`` that
made it. Each op computes its output and attaches a *local* backward that turns the node's
*upstream* gradient into each parent's *downstream* one (downstream = upstream x local) and
ACCUMULATES it: a node used twice -- a branch in the graph -- gets the sum of both gradients.
``backward()`` is a topological sort and a reverse walk.

Values are jax arrays (scalars are 0-d). ``+``, ``*`` and :func:`maximum` broadcast by numpy's
rules, and their backward sums the gradient over the broadcast axes.
:mod:`jaxbackprop.graph_model` builds the window model's loss out of these nodes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxbackprop import nonlinearities as nl


class Node:
    """One array in the graph and d(output)/d(this array), once ``backward()`` has run.

    Attributes:
      value: the array (a jax array; a scalar is 0-d).
      grad: same shape as ``value``; zeros until ``backward()`` is called on an output.
      parents: the nodes this one was computed from (none for a leaf).
      op: what made it (``"+"``, ``"max"``, ``"tanh"``, ...; ``""`` for a leaf).
      name: an optional label for printing.
      backward_local: applies this node's local backward once: passes ``grad`` (the upstream)
        on, adding upstream x local to each parent's ``grad``; does nothing for a leaf.

    >>> x, y = Node(3.0, name="x"), Node(2.0, name="y")
    >>> f = x * y + x  # x is used twice: its two gradients (y and 1) add up
    >>> f.backward()
    >>> float(f.value), float(x.grad), float(y.grad)
    (9.0, 3.0, 3.0)
    """

    __array_ufunc__ = None  # numpy_array + node must call Node.__radd__, not loop over entries

    def __init__(self, value, parents=(), op="", name=None):
        self.value = jnp.asarray(value)
        self.grad = jnp.zeros_like(self.value)
        self.parents = tuple(parents)
        self.op = op
        self.name = name
        self.backward_local = lambda: None  # a leaf has no parents to pass its gradient on to

    @property
    def shape(self):
        return self.value.shape

    def __repr__(self):
        return f"Node({self.name or self.op or 'leaf'}, shape={self.shape}, op={self.op!r})"

    def backward(self):
        """Set ``grad`` of every node this scalar depends on to d(self)/d(node).

        Grads restart from zero on every call, so calling it twice gives the same result.
        """
        if self.shape != ():
            raise ValueError(
                f"backward() needs a scalar output node (shape ()), got shape {self.shape}; "
                "reduce it first, e.g. graph.sum(node)"
            )
        order = _topological_order(self)
        for node in order:
            node.grad = jnp.zeros_like(node.value)
        self.grad = jnp.ones_like(self.value)  # d(self)/d(self) = 1: the first upstream gradient
        for node in reversed(order):  # a node's upstream is complete before it is passed on
            node.backward_local()

    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return add(self, mul(other, -1.0))  # a - b = a + (-1) b

    def __rsub__(self, other):
        return add(other, mul(self, -1.0))

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __neg__(self):
        return mul(self, -1.0)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)


def _topological_order(root):
    """Every node ``root`` depends on, each after all of its parents (iterative DFS)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node.parents)
    return order


def _node(x):
    return x if isinstance(x, Node) else Node(x, op="const")


def _broadcast(a, b):
    """Both values stretched to their common shape (numpy's rules), explicitly."""
    shape = jnp.broadcast_shapes(a.shape, b.shape)
    return tuple(n.value if n.shape == shape else jnp.broadcast_to(n.value, shape) for n in (a, b))


def _unbroadcast(g, shape):
    """Sum g over the axes that broadcasting added or stretched: the adjoint of broadcast_to."""
    if g.shape == shape:
        return g
    g = jnp.sum(g, axis=tuple(range(g.ndim - len(shape))))  # leading axes the input lacked
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return jnp.sum(g, axis=stretched, keepdims=True) if stretched else g


def _op(value, parents, op, backward):
    """The output node of an op; its local backward gets the node's upstream gradient."""
    out = Node(value, parents, op)
    out.backward_local = lambda: backward(out.grad)
    return out


def add(a, b):
    """a + b elementwise, broadcasting; the gradient of a broadcast input is summed back."""
    a, b = _node(a), _node(b)
    av, bv = _broadcast(a, b)

    def backward(g):
        # d(a+b)/da = d(a+b)/db = 1: "+ distributes" the upstream gradient to both inputs
        a.grad = a.grad + _unbroadcast(g, a.shape)
        b.grad = b.grad + _unbroadcast(g, b.shape)

    return _op(av + bv, (a, b), "+", backward)


def mul(a, b):
    """a * b elementwise, broadcasting."""
    a, b = _node(a), _node(b)
    av, bv = _broadcast(a, b)

    def backward(g):
        # d(ab)/da = b, d(ab)/db = a: "* switches" -- each input gets upstream * the OTHER one
        a.grad = a.grad + _unbroadcast(g * bv, a.shape)
        b.grad = b.grad + _unbroadcast(g * av, b.shape)

    return _op(av * bv, (a, b), "*", backward)


def maximum(a, b):
    """max(a, b) elementwise, broadcasting. At a tie (a == b) the FIRST argument counts as larger.

    jax.grad of ``jnp.maximum`` splits a tie 0.5/0.5; here one input gets it all, so
    ``maximum(0.0, m)`` has subgradient 0 at m = 0, like the model's hinge.
    """
    a, b = _node(a), _node(b)
    av, bv = _broadcast(a, b)
    a_wins = av >= bv

    def backward(g):
        # d max(a,b)/da = [a >= b], d max(a,b)/db = [a < b]: "max routes" to the larger input
        a.grad = a.grad + _unbroadcast(jnp.where(a_wins, g, 0.0), a.shape)
        b.grad = b.grad + _unbroadcast(jnp.where(a_wins, 0.0, g), b.shape)

    return _op(jnp.where(a_wins, av, bv), (a, b), "max", backward)


def matmul(a, b):
    """a @ b for 1-D or 2-D a and b (a vector acts as a 1-row or 1-column matrix)."""
    a, b = _node(a), _node(b)
    if a.value.ndim not in (1, 2) or b.value.ndim not in (1, 2):
        raise ValueError(f"matmul takes 1-D or 2-D arrays, got shapes {a.shape} and {b.shape}")

    def backward(g):
        A, B = a.value.reshape(-1, a.shape[-1]), b.value.reshape(b.shape[0], -1)  # (m, k), (k, n)
        G = g.reshape(A.shape[0], B.shape[1])  # (m, n)
        # C = A B  =>  dJ/dA = G B^T : (m, k),   dJ/dB = A^T G : (k, n)
        a.grad = a.grad + (G @ B.T).reshape(a.shape)
        b.grad = b.grad + (A.T @ G).reshape(b.shape)

    return _op(a.value @ b.value, (a, b), "@", backward)


def dot(a, b):
    """a . b of two vectors (1-D), a scalar node."""
    a, b = _node(a), _node(b)
    if a.value.ndim != 1 or b.value.ndim != 1:
        raise ValueError(f"dot takes two vectors, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def transpose(a):
    """a.T (axes reversed)."""
    a = _node(a)

    def backward(g):
        a.grad = a.grad + g.T  # out[j, i] = a[i, j]  =>  dJ/da = (dJ/dout)^T

    return _op(a.value.T, (a,), "T", backward)


def reshape(a, shape):
    """a with a new shape; the gradient flows back in the old shape."""
    a = _node(a)

    def backward(g):
        a.grad = a.grad + g.reshape(a.shape)  # the same numbers, so local gradient 1

    return _op(a.value.reshape(shape), (a,), "reshape", backward)


def concat(nodes, axis=0):
    """Concatenate along ``axis``; each input gets back its own slice of the gradient."""
    nodes = [_node(n) for n in nodes]

    def backward(g):
        cuts = np.cumsum([n.shape[axis] for n in nodes])[:-1]
        for n, g_slice in zip(nodes, jnp.split(g, cuts, axis=axis)):
            n.grad = n.grad + g_slice

    return _op(jnp.concatenate([n.value for n in nodes], axis=axis), nodes, "concat", backward)


def sum(a, axis=None):  # noqa: A001 -- graph.sum mirrors jnp.sum
    """Sum over ``axis`` (all axes by default)."""
    a = _node(a)

    def backward(g):
        # d(sum_i a_i)/da_i = 1: every summed entry gets the upstream gradient
        g = g if axis is None else jnp.expand_dims(g, axis)
        a.grad = a.grad + jnp.broadcast_to(g, a.shape)

    return _op(jnp.sum(a.value, axis=axis), (a,), "sum", backward)


def activate(name, z, alpha=None):
    """h = f(z) elementwise for one of :data:`jaxbackprop.nonlinearities.ACTIVATIONS`.

    ``alpha`` (a scalar node) is prelu's learned slope and is used by prelu only.
    """
    z = _node(z)
    alpha = _node(alpha) if name == "prelu" and alpha is not None else None
    a_value = None if alpha is None else alpha.value
    h = nl.apply(name, z.value, a_value)

    def backward(g):
        # h = f(z) elementwise  =>  dJ/dz = dJ/dh o f'(z)
        z.grad = z.grad + g * nl.derivative(name, z.value, h, a_value)
        if alpha is not None:
            # prelu h = alpha z where z <= 0  =>  dJ/dalpha = sum over entries of dJ/dh o z [z <= 0]
            alpha.grad = alpha.grad + jnp.sum(g * nl.prelu_alpha_derivative(z.value))

    return _op(h, (z,) if alpha is None else (z, alpha), name, backward)


# the six nonlinearities by name; prelu takes its slope node as well: prelu(z, alpha)
sigmoid = functools.partial(activate, "sigmoid")
tanh = functools.partial(activate, "tanh")
hardtanh = functools.partial(activate, "hardtanh")
relu = functools.partial(activate, "relu")
leaky_relu = functools.partial(activate, "leaky_relu")
prelu = functools.partial(activate, "prelu")


def embedding(E, ids):
    """Rows of E (V, d) picked by integer ``ids`` of any shape: shape (*ids.shape, d)."""
    E, ids = _node(E), jnp.asarray(ids)

    def backward(g):
        # out[i] = E[ids[i]]  =>  dJ/dE[v] = sum of dJ/dout[i] over all i with ids[i] = v:
        # a scatter-ADD, so a repeated word gets every gradient and unused rows stay 0
        E.grad = E.grad.at[ids].add(g)

    return _op(E.value[ids], (E,), "embed", backward)


def softmax_cross_entropy(logits, labels):
    """Per-row cross-entropy ``-log softmax(logits_b)[labels_b]``, shape (B,).

    ``logits`` is a (B, C) node, ``labels`` int (B,). Average it with :func:`sum` and ``*``.
    """
    logits, labels = _node(logits), jnp.asarray(labels)
    log_p = jax.nn.log_softmax(logits.value, axis=-1)  # (B, C)

    def backward(g):
        # J_b = -log softmax(l_b)[y_b]  =>  dJ_b/dl_b = softmax(l_b) - onehot(y_b)
        y = jax.nn.one_hot(labels, log_p.shape[1], dtype=log_p.dtype)
        logits.grad = logits.grad + g[:, None] * (jnp.exp(log_p) - y)

    return _op(-jnp.take_along_axis(log_p, labels[:, None], axis=1)[:, 0], (logits,), "softmax-CE", backward)
