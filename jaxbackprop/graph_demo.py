"""The lecture's worked example on the graph engine: f(x, y, z) = (x + y) max(y, z).

What ``jaxbackprop graph-demo`` prints: each edge's forward value, each node's upstream, local
and downstream gradients, the wiggle check, and the three gradient-flow patterns.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxbackprop.graph import Node, add, maximum, mul


def lecture_example(x=1.0, y=2.0, z=0.0):
    """The lecture's f(x, y, z) = (x + y) max(y, z), with forward and backward done.

    Returns:
      dict of the nodes x, y, z, a = x + y, b = max(y, z) and f = a b, grads filled in.

    >>> g = lecture_example()
    >>> float(g["f"].value), [float(g[k].grad) for k in "xyz"]
    (6.0, [2.0, 5.0, 0.0])
    """
    g = {k: Node(float(v), name=k) for k, v in zip("xyz", (x, y, z))}
    g["a"], g["b"] = add(g["x"], g["y"]), maximum(g["y"], g["z"])
    g["f"] = mul(g["a"], g["b"])
    for k in "abf":
        g[k].name = k
    g["f"].backward()
    return g


def _local_gradients(node):
    """d(node)/d(parent) for each parent of a scalar node: its local backward run on upstream 1."""
    saved = [(n, n.grad) for n in (node, *node.parents)]
    for parent in node.parents:
        parent.grad = jnp.zeros_like(parent.value)
    node.grad = jnp.ones_like(node.value)
    node.backward_local()
    local = [parent.grad for parent in node.parents]
    for n, grad in saved:
        n.grad = grad
    return local


def _num(v):
    return f"{float(v):.4g}"


def _table(rows):
    """Rows of strings as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _backward_rows(g):
    """One row per edge, f first: upstream, local gradient, downstream; and what each edge sent."""
    rows, sent = [("node", "upstream", "input", "local gradient", "downstream")], {}
    for name in "fab":
        node, up = g[name], _num(g[name].grad)
        for i, (p, local) in enumerate(zip(node.parents, _local_gradients(node))):
            other = node.parents[1 - i].name
            rule = {"+": "", "*": f" = {other}", "max": f" = [{p.name} {'>=' if i == 0 else '>'} {other}]"}[node.op]
            sent[name, p.name] = _num(node.grad * local)
            rows.append(
                (
                    f"{name} ({node.op})" if i == 0 else "",
                    up if i == 0 else "",
                    p.name,
                    f"d{name}/d{p.name}{rule} = {_num(local)}",
                    f"{up} * {_num(local)} = {sent[name, p.name]}",
                )
            )
    return rows, sent


def demo_text(x=1.0, y=2.0, z=0.0, wiggle=0.1):
    """The lecture's worked example as text: forward values, then downstream = upstream * local.

    Also the final gradients (y's two branches summed), a numeric check that nudging y by
    ``wiggle`` moves f by about ``wiggle * df/dy``, and the three patterns of gradient flow.
    """
    g = lecture_example(x, y, z)
    v = {k: _num(n.value) for k, n in g.items()}
    d = {k: _num(n.grad) for k, n in g.items()}
    rows, sent = _backward_rows(g)
    finals = [[s for (_, p), s in sent.items() if p == k] for k in "xyz"]
    f_new, y_new = lecture_example(x, y + wiggle, z)["f"].value, _num(y + wiggle)
    return "\n".join(
        [
            f"f(x, y, z) = (x + y) * max(y, z)   at x = {v['x']}, y = {v['y']}, z = {v['z']}",
            "",
            "Forward pass: the value on each edge",
            *_table(
                [
                    ("a = x + y", f"= {v['x']} + {v['y']}", f"= {v['a']}"),
                    ("b = max(y, z)", f"= max({v['y']}, {v['z']})", f"= {v['b']}"),
                    ("f = a * b", f"= {v['a']} * {v['b']}", f"= {v['f']}"),
                ]
            ),
            "",
            "Backward pass, from df/df = 1 back to the inputs: downstream = upstream * local",
            *_table(rows),
            "",
            "Final gradients: what reaches each input, summed",
            *[
                f"  df/d{k} = " + " + ".join(parts) + (f" = {d[k]}" if len(parts) > 1 else "")
                for k, parts in zip("xyz", finals)
            ],
            f"  y branches (it feeds both + and max), so its gradients sum: {' + '.join(finals[1])} = {d['y']}",
            "",
            f"Wiggle check: y -> {y_new} should move f by about {_num(wiggle)} * df/dy",
            *_table(
                [
                    (
                        f"f({v['x']}, {y_new}, {v['z']}) - f({v['x']}, {v['y']}, {v['z']})",
                        f"= {_num(f_new)} - {v['f']}",
                        f"= {_num(f_new - g['f'].value)}",
                    ),
                    (f"{_num(wiggle)} * df/dy", f"= {_num(wiggle)} * {d['y']}", f"= {_num(wiggle * g['y'].grad)}"),
                ]
            ),
            "",
            "Three patterns of gradient flow",
            *_table(
                [
                    ("+ distributes", "both inputs get the upstream gradient"),
                    ("", f"a = x + y sends {sent['a', 'x']} to x and {sent['a', 'y']} to y"),
                    ("max routes", "only the larger input gets it (a tie goes to the first input)"),
                    ("", f"b = max(y, z) sends {sent['b', 'y']} to y and {sent['b', 'z']} to z"),
                    ("* switches", "each input gets the upstream gradient times the OTHER input"),
                    (
                        "",
                        (
                            f"f = a * b sends {d['f']} * {v['b']} = {sent['f', 'a']} to a "
                            f"and {d['f']} * {v['a']} = {sent['f', 'b']} to b"
                        ),
                    ),
                ]
            ),
        ]
    )
