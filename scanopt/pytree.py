"""Plain-container pytrees (tuples, lists, dicts, None) for ``scanopt.carry_scan``, JAX-style.

A tree's structure (its *treedef*) is nested tuples, hashable and JSON-friendly:
``("leaf",)``, ``("none",)``, ``("tuple", children)``, ``("list", children)`` and
``("dict", keys, children)``. Leaves are in the order JAX uses: containers in order, dict
entries by sorted key. Plain Python: the cached-call path uses it.
"""

from __future__ import annotations

from typing import Any

from scanopt.errors import ScanTypeError

LEAF = ("leaf",)
NONE = ("none",)


def flatten(tree: Any, where: str = "") -> tuple[list, tuple, list[str]]:
    """``(leaves, treedef, paths)``: the leaves in order, the structure, and each leaf's path
    as the user writes it (``carry['h']``, ``xs[0]``) after ``where``."""
    leaves: list = []
    paths: list[str] = []

    def walk(node, path):
        if node is None:
            return NONE
        if type(node) in (tuple, list):
            return (type(node).__name__, tuple(walk(v, f"{path}[{k}]")
                                               for k, v in enumerate(node)))
        if type(node) is dict:
            keys = _sorted_keys(node, path)
            return ("dict", keys, tuple(walk(node[k], f"{path}[{k!r}]") for k in keys))
        leaves.append(node)
        paths.append(path)
        return LEAF

    return leaves, walk(tree, where), paths


def unflatten(treedef: tuple, leaves: list) -> Any:
    """The tree of ``treedef`` with ``leaves`` in place of its leaves."""
    remaining = iter(leaves)

    def build(node):
        kind = node[0]
        if kind == "leaf":
            return next(remaining)
        if kind == "none":
            return None
        if kind == "dict":
            return {k: build(child) for k, child in zip(node[1], node[2])}
        children = [build(child) for child in node[1]]
        return tuple(children) if kind == "tuple" else children

    return build(treedef)


def leaf_count(treedef: tuple) -> int:
    kind = treedef[0]
    if kind == "leaf":
        return 1
    if kind == "none":
        return 0
    return sum(leaf_count(child) for child in treedef[-1])


def describe(treedef: tuple) -> str:
    """The structure as a user reads it: ``{'c': *, 'h': *}``, ``(*, [*, *])``."""
    kind = treedef[0]
    if kind == "leaf":
        return "*"
    if kind == "none":
        return "None"
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {describe(c)}" for k, c in zip(treedef[1], treedef[2])) \
            + "}"
    inner = ", ".join(describe(c) for c in treedef[1])
    if kind == "tuple":
        return f"({inner},)" if len(treedef[1]) == 1 else f"({inner})"
    return f"[{inner}]"


def _sorted_keys(node: dict, path: str) -> tuple:
    try:
        return tuple(sorted(node))
    except TypeError:
        raise ScanTypeError(f"the dict{' ' + path if path else ''} has keys that cannot be "
                            "sorted", hint="Use keys of one type (strings) in a pytree.") \
            from None
