"""Feature and platform gates from rustdoc HTML: the "Available on crate feature X only." notes as ``cfg``.

The HTML parser keeps each page's note in ``metadata["portability"]``; here it becomes the same
``metadata["cfg"]`` the JSON side writes, and children inherit their parent's gate (a method of a gated type).
"""

from __future__ import annotations

from crates import cfgexpr
from crates.pipeline.types import ParsedItem


def apply_portability(items: list[ParsedItem]) -> int:
    """Set ``metadata["cfg"]`` from the portability notes, parents' included; return how many are gated."""
    gates: dict[str, cfgexpr.Cfg | None] = {}
    gated = 0
    for item in sorted(items, key=lambda i: i.path.count("::")):
        note = item.metadata.get("portability")
        own = cfgexpr.from_portability(note) if isinstance(note, str) and note else None
        gate = cfgexpr.combine(gates.get(item.parent_path), own)
        gates.setdefault(item.path, gate)
        if gate is not None:
            item.metadata["cfg"] = str(gate)
            gated += 1
    return gated
