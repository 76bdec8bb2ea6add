"""Element paths for error messages: `/ProcessProductionSchedule/DataArea/ProductionRequest[2]/ID`.

An analyst reads the path beside the line number to find the element; names keep the
document's own prefixes (what the analyst sees in the file) and an index is added only
where siblings share a name.
"""

from __future__ import annotations

from typing import Any


def display_name(element: Any) -> str:
    """The element's name as written in the document (prefix:local or local)."""
    tag = element.tag
    if not isinstance(tag, str):
        return "node()"
    if tag.startswith("{"):
        local = tag.rsplit("}", 1)[1]
        prefix = element.prefix
        return f"{prefix}:{local}" if prefix else local
    return str(tag)


def element_path(element: Any) -> str:
    parts: list[str] = []
    node = element
    while node is not None:
        name = display_name(node)
        parent = node.getparent()
        if parent is not None:
            same = [s for s in parent.iterchildren(node.tag)] if isinstance(node.tag, str) else []
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))


def resolve_libxml_path(tree: Any, path: str | None) -> Any:
    """The element a libxml2 error path (`/*/p:a/*[2]`) names, or None. Prefixes in
    such paths are the document's own, so every declared namespace is offered."""
    if not path:
        return None
    namespaces: dict[str, str] = {}
    root = tree.getroot() if hasattr(tree, "getroot") else tree
    for element in root.iter():
        for prefix, uri in (element.nsmap or {}).items():
            if prefix and prefix not in namespaces:
                namespaces[prefix] = uri
    try:
        found = tree.xpath(path, namespaces=namespaces)
    except Exception:  # a path libxml2 wrote that XPath cannot read: fall back to its text
        return None
    return found[0] if isinstance(found, list) and found else None
