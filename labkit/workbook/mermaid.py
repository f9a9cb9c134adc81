"""The mermaid diagrams in the notebooks' markdown, and their size (nodes, edges).

The notebooks keep each diagram small enough to read on a 1024x768 projector: mermaid scales a
diagram to the width of the output area, so the more nodes side by side, the smaller the labels.
`measure` counts what a flowchart draws; the convention tests hold each diagram to a limit.
"""

from __future__ import annotations

import re
from itertools import pairwise

_BLOCK = re.compile(r"```mermaid\s*\n(.*?)```", re.S)
#: An edge between two node references: -->, ---, -.->, ==>, with an optional |label| or
#: -- label --> form.
_EDGE = re.compile(r"\s*(?:<?(?:-{2,}|-\.+-|={2,})(?:>|o|x)?)\s*(?:\|[^|]*\|)?\s*")
#: A node reference: an id, optionally followed by its shape and label ([..], (..), {..}, ...).
_NODE = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\[\[.*?\]\]|\[\(.*?\)\]|\(\(.*?\)\)|\(\[.*?\]\)|"
                   r"\{\{.*?\}\}|\[.*?\]|\(.*?\)|\{.*?\}|>.*?\])?\s*$")
_SKIP = ("graph", "flowchart", "style", "classDef", "class", "linkStyle", "click", "subgraph",
         "end", "direction", "%%")


def blocks(markdown: str) -> list[str]:
    """The source of each ```mermaid block in a markdown text."""
    return [m.group(1) for m in _BLOCK.finditer(markdown)]


def _refs(part: str) -> list[str]:
    out = []
    for ref in part.split("&"):
        m = _NODE.match(ref)
        if m:
            out.append(m.group(1))
    return out


def direction(source: str) -> str:
    """`LR`, `RL`, `TB`/`TD` or `BT`: which way a flowchart grows."""
    for raw in source.splitlines():
        words = raw.split()
        if words and words[0] in ("graph", "flowchart"):
            return words[1].upper() if len(words) > 1 else "TB"
    return "TB"


def longest_chain(source: str) -> int:
    """The most nodes on one path (`A --> B --> C` is 3): how many boxes stand side by side in
    a left-to-right diagram."""
    edges: dict[str, set[str]] = {}
    for raw in source.splitlines():
        line = raw.strip().rstrip(";")
        if not line or line.split()[0] in _SKIP or line.startswith("%%"):
            continue
        groups = _groups(line)
        for left, right in pairwise(groups):
            for a in left:
                edges.setdefault(a, set()).update(right)

    def depth(node: str, seen: frozenset[str]) -> int:
        nxt = [n for n in edges.get(node, ()) if n not in seen]
        return 1 + max((depth(n, seen | {n}) for n in nxt), default=0)

    nodes = set(edges) | {n for v in edges.values() for n in v}
    return max((depth(n, frozenset({n})) for n in nodes), default=0)


def _groups(line: str) -> list[list[str]]:
    """The node ids between a line's edges (`A --> B & C`: [[A], [B, C]])."""
    # Hide labels so that arrows inside them are not read as edges.
    masked = re.sub(r"\[[^\]]*\]|\([^)]*\)|\{[^}]*\}|\|[^|]*\|",
                    lambda m: m.group(0)[0] + "_" * (len(m.group(0)) - 2) + m.group(0)[-1], line)
    cuts = [(m.start(), m.end()) for m in _EDGE.finditer(masked) if m.group(0).strip()]
    parts, last = [], 0
    for a, b in cuts:
        parts.append(line[last:a])
        last = b
    parts.append(line[last:])
    return [_refs(p) for p in parts]


def measure(source: str) -> tuple[set[str], int]:
    """(the node ids, the number of edges) a flowchart draws. `A --> B & C` is two edges;
    `A --> B --> C` is two edges; labels inside shapes may hold anything but brackets."""
    nodes: set[str] = set()
    edges = 0
    for raw in source.splitlines():
        line = raw.strip().rstrip(";")
        if not line or line.split()[0] in _SKIP or line.startswith("%%"):
            continue
        groups = _groups(line)
        for g in groups:
            nodes.update(g)
        for left, right in pairwise(groups):
            edges += len(left) * len(right)
    return nodes, edges
