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


def measure(source: str) -> tuple[set[str], int]:
    """(the node ids, the number of edges) a flowchart draws. `A --> B & C` is two edges;
    `A --> B --> C` is two edges; labels inside shapes may hold anything but brackets."""
    nodes: set[str] = set()
    edges = 0
    for raw in source.splitlines():
        line = raw.strip().rstrip(";")
        if not line or line.split()[0] in _SKIP or line.startswith("%%"):
            continue
        # Hide labels so that arrows inside them are not read as edges.
        masked = re.sub(r"\[[^\]]*\]|\([^)]*\)|\{[^}]*\}|\|[^|]*\|",
                        lambda m: m.group(0)[0] + "_" * (len(m.group(0)) - 2) + m.group(0)[-1],
                        line)
        cuts = [(m.start(), m.end()) for m in _EDGE.finditer(masked) if m.group(0).strip()]
        parts, last = [], 0
        for a, b in cuts:
            parts.append(line[last:a])
            last = b
        parts.append(line[last:])
        groups = [_refs(p) for p in parts]
        for g in groups:
            nodes.update(g)
        for left, right in pairwise(groups):
            edges += len(left) * len(right)
    return nodes, edges
