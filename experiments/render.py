"""Templates -> markdown: the prose of a result section, filled from its result.json.

A template is markdown whose ``{placeholders}`` are Python format fields over the result
(``{checks[overfits]}``, ``{best_dev_f1:.3f}``; a list is formatted item by item and joined with
", "; None prints as –), with three block comments:

* ``<!--if PATH-->...<!--else-->...<!--end-->`` (and ``<!--if not PATH-->``): PATH is a dotted
  name into the result (``parts.sigmoid.zeros_stay_symmetric``); a missing one is false;
* ``<!--each PATH-->...<!--end-->``: the body once per item of a list or value of a dict, with
  the item's own keys, ``{key}`` (its index or dict key), ``{item}`` and ``last`` in scope.

A block comment alone on its line takes the line with it. Blocks nest; literal braces are ``{{ }}``.
"""

from __future__ import annotations

import collections
import re
import string

_KEYWORD = r"<!--\s*(if not|if|each|else|end)\b\s*([\w.]*)\s*-->"
TAG = re.compile(rf"(?m)^[ \t]*{_KEYWORD}[ \t]*\n|{_KEYWORD}")


class _Formatter(string.Formatter):
    def format_field(self, value, spec):
        if value is None:
            return "–"
        if isinstance(value, (list, tuple)):
            return ", ".join(self.format_field(v, spec) for v in value)
        if isinstance(value, str) and spec:  # a non-finite number, stored as "nan" / "inf"
            return value
        return format(value, spec)


def _parse(text: str) -> list:
    """Text and block tags -> a tree of str, ``{"if", "negate", "then", "else"}`` and ``{"each", "body"}``."""
    root: list = []
    filling, opened, pos = [root], [], 0  # the lists being filled, innermost last; the open blocks
    for m in TAG.finditer(text):
        filling[-1].append(text[pos : m.start()])
        pos = m.end()
        word, path = m.group(1, 2) if m.group(1) else m.group(3, 4)
        if word in ("if", "if not", "each"):
            node = {"each": path, "body": []} if word == "each" else {"if": path, "negate": word == "if not"}
            node.update({} if word == "each" else {"then": [], "else": []})
            filling[-1].append(node)
            filling.append(node["body"] if word == "each" else node["then"])
            opened.append(node)
        elif not opened or (word == "else" and "if" not in opened[-1]):
            raise ValueError(f"<!--{word}--> at offset {m.start()} closes no <!--if--> or <!--each-->")
        elif word == "else":
            filling[-1] = opened[-1]["else"]
        else:
            filling.pop()
            opened.pop()
    if opened:
        raise ValueError(f"a block is never closed: {opened[-1].get('if') or opened[-1].get('each')}")
    root.append(text[pos:])
    return root


def lookup(path: str, scope):
    """``a.b.0.c`` in ``scope``: dict keys, list indices."""
    value = scope
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _truth(path: str, scope) -> bool:
    try:
        return bool(lookup(path, scope))
    except (KeyError, IndexError):  # a missing entry (e.g. an activation that did not run) is false
        return False


def _render(nodes: list, scope) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(_Formatter().vformat(node, (), scope))
        elif "if" in node:
            out.append(_render(node["then"] if _truth(node["if"], scope) != node["negate"] else node["else"], scope))
        else:
            items = lookup(node["each"], scope)
            pairs = list(items.items() if isinstance(items, dict) else enumerate(items))
            for n, (key, item) in enumerate(pairs):
                inner = {
                    "key": key,
                    "item": item,
                    "last": n == len(pairs) - 1,
                    **(item if isinstance(item, dict) else {}),
                }
                out.append(_render(node["body"], collections.ChainMap(inner, scope)))
    return "".join(out)


def render(template: str, result: dict) -> str:
    """``template`` filled from ``result`` (see the module docstring for the syntax).

    >>> render("<!--if ok-->{n:.2f}<!--else-->-<!--end--><!--each xs--> {item}<!--end-->", {"ok": 1, "n": 2, "xs": [3]})
    '2.00 3'
    """
    try:
        return _render(_parse(template), collections.ChainMap(result))
    except (KeyError, IndexError) as e:
        raise KeyError(f"{result.get('name', '?')}: result.json has no {e} that the template names") from None
