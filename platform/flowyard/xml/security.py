"""The one hardened XML parser factory every XML step uses.

Why one place: XML's dangerous features (external entities, DTD loading, network
access, entity expansion, unbounded trees) are all switched on or off in the parser, so
a single factory with safe settings, reviewed once, keeps every step safe by default:

- `resolve_entities=False`: an entity reference is never replaced by its content, so
  `<!ENTITY x SYSTEM "file:///etc/passwd">` reads nothing; besides, any document whose
  DTD declares an entity is refused (`refuse_entities`): XXE, billion laughs and the
  quadratic blowup all need an entity declaration.
- `load_dtd=False`, `no_network=True`, plus a resolver that refuses every external
  resource: a `<!DOCTYPE ... SYSTEM "http://...">` opens no connection and reads no file.
- `huge_tree=False`: libxml2's own limits stay on (nesting depth 256, a text or
  attribute value up to 10,000,000 characters, entity amplification bounded).
- Our limits on top (`XmlLimits`): document size, nesting depth and attribute size,
  checked before or while the document is walked so hostile input fails fast.

Stylesheets and schemas are trusted files reviewed in git, but what they may load is
still fenced: `FolderResolver` serves `xsl:import`, `xsl:include`, `document()` and
`xs:include`/`xs:import` only from inside the flow's folder, and `xslt_access_control`
denies writing files, creating folders and any network access.
"""

from __future__ import annotations

import io
import mmap
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

from lxml import etree

from ..errors import InputLocation, StepError
from .where import element_path

DEFAULT_MAX_SIZE = 100_000_000
DEFAULT_STREAM_MAX_SIZE = 10_000_000_000
DEFAULT_MAX_DEPTH = 256  # libxml2's own limit without huge_tree
DEFAULT_MAX_ATTRIBUTE = 1_000_000
# a parsed element costs libxml2 ~120 bytes and xml.parse's data ~280 more: 2,000,000
# elements stay well under a gigabyte (12,000,000 `<a/>` in 48 MB peaked at 3.4 GB)
DEFAULT_MAX_ELEMENTS = 2_000_000
LIBXML_MAX_VALUE = 10_000_000  # libxml2 refuses longer text or attribute values (no huge_tree)


@dataclass(frozen=True)
class XmlLimits:
    """Bounds applied to every input document (not to stylesheets or schemas)."""

    max_size: int = DEFAULT_MAX_SIZE
    max_depth: int = DEFAULT_MAX_DEPTH
    max_attribute: int = DEFAULT_MAX_ATTRIBUTE
    max_elements: int = DEFAULT_MAX_ELEMENTS


class AccessRefused(OSError):
    """A stylesheet, schema or document asked for a resource it may not load."""


class RefuseAll(etree.Resolver):  # type: ignore[misc]
    """Input documents load nothing from outside: every external resource is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def resolve(self, url: str, pubid: str | None, context: Any) -> Any:
        self.refused.append(url)
        raise AccessRefused(f"refused to load {url!r}: XML input may not load external resources")


class FolderResolver(etree.Resolver):  # type: ignore[misc]
    """Serves files from inside one folder; refuses everything else (other folders,
    http, ftp, ...). Raising (rather than returning None) stops lxml from falling back
    to its default loader."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder.resolve()
        self.refused: list[str] = []

    def resolve(self, url: str, pubid: str | None, context: Any) -> Any:
        parsed = urlparse(url)
        if parsed.scheme in ("", "file") and not parsed.netloc:
            path = Path(unquote(parsed.path)).resolve()
            if path.is_relative_to(self.folder) and path.is_file():
                return self.resolve_filename(str(path), context)
        self.refused.append(url)
        raise AccessRefused(f"refused to load {url!r}: only files inside {self.folder} may be loaded")


def make_parser(folder: Path | None = None) -> tuple[Any, RefuseAll | FolderResolver]:
    """A hardened parser and its resolver. With `folder`, files inside it may be loaded
    (for stylesheets and schemas); without, nothing external is ever loaded."""
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )
    resolver: RefuseAll | FolderResolver = FolderResolver(folder) if folder else RefuseAll()
    parser.resolvers.add(resolver)
    return parser, resolver


_local = threading.local()


def input_parser() -> Any:
    """This thread's parser for input documents (a parser is reusable, one at a time;
    built once per thread instead of once per message)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser, _resolver = make_parser()
        _local.parser = parser
    return parser


def hardened_iterparse(source: IO[bytes], tag: str | None, events: tuple[str, ...] = ("end",)) -> Any:
    """`lxml.etree.iterparse` with the same safe settings as `make_parser`."""
    return etree.iterparse(
        source,
        events=events,
        tag=tag,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def log_lines(log: Any, limit: int = 10) -> list[str]:
    """The first lines of an lxml error log, each with its file and line."""
    lines = []
    for entry in list(log)[:limit]:
        where = f"{Path(entry.filename).name}:{entry.line}: " if entry.filename and entry.line else ""
        lines.append(f"{where}{entry.message}")
    return lines


def refusals(resolver: RefuseAll | FolderResolver) -> str:
    """What a stylesheet or schema asked to load and was refused, for an error message."""
    if not resolver.refused:
        return ""
    return (
        "; refused to load "
        + ", ".join(repr(u) for u in resolver.refused)
        + " (only files inside the flow's folder may be loaded)"
    )


def xslt_access_control() -> Any:
    """Stylesheets may read (through `FolderResolver`, so only the flow's folder) but
    never write files, create folders or touch the network."""
    return etree.XSLTAccessControl(
        read_file=True, write_file=False, create_dir=False, read_network=False, write_network=False
    )


# -- reading input documents ------------------------------------------------------------

_LIBXML_HINTS = (
    ("amplification", "entity expansion is too large (an entity bomb?); documents with entities are refused"),
    ("Excessive depth", "elements are nested deeper than 256 levels; refused"),
    ("Buffer size limit", "a text or attribute value is longer than 10,000,000 characters; refused"),
    ("Resource limit", "a text or attribute value is longer than 10,000,000 characters; refused"),
    ("Detected an entity reference loop", "an entity refers to itself; refused"),
)


def syntax_error(exc: etree.XMLSyntaxError, payload: Any = None, what: str = "the input") -> StepError:
    """An analyst-readable StepError for a libxml2 parse error, with line, column and,
    for a malformed document, the path of the elements open where it broke."""
    entry = exc.error_log.last_error if exc.error_log else None
    raw = (entry.message if entry is not None else exc.msg) or str(exc)
    line = entry.line if entry is not None and entry.line else exc.lineno
    column = entry.column if entry is not None and entry.column else (exc.position[1] if exc.position else None)
    return parse_error(raw, line, column, payload, what)


def parse_error(
    raw: str, line: int | None, column: int | None, payload: Any = None, what: str = "the input"
) -> StepError:
    raw = raw.strip()
    for needle, hint in _LIBXML_HINTS:
        if needle in raw:
            return StepError(f"{what} is refused: {hint}", where=InputLocation(line, column))
    path = open_elements(payload) if payload is not None else None
    return StepError(f"{what} is not well-formed XML: {raw}", where=InputLocation(line, column, path=path))


def open_elements(payload: Any) -> str | None:
    """The path of the elements still open where a malformed document breaks, e.g.
    `/orders/order[3]/line` (an index counts the same-named siblings before it). Only on
    the failure path: the document is read again, streamed, to the point of the error.

    A parser target sees every start tag libxml2 read before the error; iterparse's
    events do not (lxml 6.2 drops those of the chunk that held the error)."""
    target = _OpenElements()
    parser = etree.XMLParser(
        target=target, resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    parser.resolvers.add(RefuseAll())
    try:
        source = open_payload(payload)
        while chunk := source.read(64 * 1024):
            parser.feed(chunk)
        parser.close()
    except (etree.XMLSyntaxError, AccessRefused, StepError):
        return target.path()
    return None


class _OpenElements:
    """A parser target that keeps the names of the open elements, as written (with the
    document's own prefix), and how many same-named siblings came before each."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.counts: list[dict[str, int]] = [{}]
        self.scopes: list[dict[str, str]] = [{}]  # namespace URI -> prefix in scope

    def start(self, tag: str, attrib: Any, nsmap: Any = None) -> None:
        scope = self.scopes[-1]
        if nsmap:
            scope = {**scope, **{uri: prefix or "" for prefix, uri in nsmap.items()}}
        self.scopes.append(scope)
        name = tag
        if tag.startswith("{"):
            uri, local = tag[1:].split("}", 1)
            prefix = scope.get(uri, "")
            name = f"{prefix}:{local}" if prefix else local
        seen = self.counts[-1][name] = self.counts[-1].get(name, 0) + 1
        self.stack.append(f"{name}[{seen}]" if seen > 1 else name)
        self.counts.append({})

    def end(self, tag: str) -> None:
        self.stack.pop()
        self.counts.pop()
        self.scopes.pop()

    def close(self) -> None:
        return None

    def path(self) -> str | None:
        return "/" + "/".join(self.stack) if self.stack else None


def payload_size(payload: Any) -> int | None:
    """The payload's size in bytes (None when a file-backed payload does not say)."""
    if isinstance(payload, bytes | bytearray | memoryview | mmap.mmap):
        return len(payload)
    if callable(getattr(payload, "open", None)):
        size = getattr(payload, "size", None)
        return size if isinstance(size, int) else None
    raise StepError("this XML step needs the document as bytes")


def open_payload(payload: Any) -> IO[bytes]:
    """A binary stream over the payload without copying it: bytes, bytearray, memoryview,
    an mmap of a file, or a file-backed payload (any object whose `open()` returns a
    binary stream), which is then read as it is parsed."""
    if isinstance(payload, mmap.mmap):
        payload.seek(0)
        return payload  # type: ignore[return-value]
    if isinstance(payload, bytes | bytearray | memoryview):
        return io.BytesIO(payload)
    if callable(getattr(payload, "open", None)):
        stream: IO[bytes] = payload.open()
        return stream
    raise StepError("this XML step needs the document as bytes")


def check_size(payload: Any, limits: XmlLimits) -> None:
    size = payload_size(payload)
    if size is None:
        return
    if size > limits.max_size:
        raise StepError(f"the document is {size:,} bytes, more than the limit of {limits.max_size:,} (option max_size)")
    if size == 0:
        raise StepError("the document is empty")


_ENTITY_DECL = re.compile(rb"<!ENTITY\s+(%\s+)?([^\s>]+)")


def refuse_entities(tree: Any, raw: Any = None) -> None:
    """Refuse a document whose DTD declares entities (XXE and entity bombs need one)."""
    dtd = tree.docinfo.internalDTD
    if dtd is None:
        return
    names = [entity.name for entity in dtd.iterentities()]
    if not names:
        return
    line = None
    if isinstance(raw, bytes | bytearray):
        match = _ENTITY_DECL.search(bytes(raw[:1_000_000]))
        if match:
            line = raw.count(b"\n", 0, match.start()) + 1
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    raise StepError(
        f"the document declares entities ({shown}) in its DOCTYPE; entity declarations are refused "
        "(they are how XXE file reads and entity-expansion bombs work)",
        where=InputLocation(line),
    )


_LONG_ATTRIBUTE = etree.XPath("descendant-or-self::*[@*[string-length(.) > $limit]][1]")


def check_tree(root: Any, limits: XmlLimits) -> None:
    """Depth and attribute-size limits over a parsed tree or record (libxml2 already
    stopped anything past its own hard limits). One XPath call in C finds an over-long
    attribute; Python only looks closer when there is one."""
    max_attribute = limits.max_attribute
    found = _LONG_ATTRIBUTE(root, limit=max_attribute) if max_attribute < LIBXML_MAX_VALUE else None
    if found:
        element = found[0]
        name, value = next((k, v) for k, v in element.items() if len(v) > max_attribute)
        raise StepError(
            f"attribute {name} is {len(value):,} characters long, "
            f"more than the limit of {max_attribute:,} (option max_attribute)",
            where=InputLocation(element.sourceline, path=element_path(element)),
        )
    max_depth = limits.max_depth
    if max_depth < DEFAULT_MAX_DEPTH:
        for element in root.iter():
            depth = sum(1 for _ in element.iterancestors()) + 1
            if depth > max_depth:
                raise StepError(
                    f"elements are nested {depth} levels deep, more than the limit of {max_depth} (option max_depth)",
                    where=InputLocation(element.sourceline, path=element_path(element)),
                )


_NOT_MARKUP = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>", re.DOTALL)


def start_tags(payload: bytes | bytearray, limit: int) -> int:
    """How many elements a document in memory holds, counted in C without parsing:
    every start tag begins with a `<` that is not `</`, `<!` or `<?`. Only a `<` inside
    a comment, CDATA section or processing instruction could be counted wrongly, so when
    the count passes `limit` those are taken out and it is counted again."""
    opened = payload.count(b"<")
    if opened <= limit:
        return opened  # most documents stop here: one pass of memchr
    count = opened - payload.count(b"</") - payload.count(b"<!") - payload.count(b"<?")
    if count > limit and (b"<!--" in payload or b"<![CDATA[" in payload or b"<?" in payload):
        bare = _NOT_MARKUP.sub(b"", payload)
        count = bare.count(b"<") - bare.count(b"</") - bare.count(b"<!")
    return count


def opened_tags(payload: Any) -> int:
    """How many `<` a file-backed document holds (a bound on its elements), read a
    megabyte at a time."""
    stream = open_payload(payload)
    opened = 0
    try:
        while chunk := stream.read(1 << 20):
            opened += chunk.count(b"<")
    finally:
        if stream is not payload:
            stream.close()
    return opened


def check_elements(payload: Any, limits: XmlLimits) -> None:
    """Refuse a document of more than `max_elements` elements before its tree is built
    (a tree costs memory by the element: 48 MB of `<a/>` took 3.4 GB in xml.parse).

    A document in memory is counted in C (`start_tags`); a file-backed one is streamed,
    each element freed once counted, up to the one past the limit (whose line is named)."""
    limit = limits.max_elements
    if isinstance(payload, bytes | bytearray):
        count = start_tags(payload, limit)
        if count > limit:
            raise StepError(
                f"the document has {count:,} elements, more than the limit of {limit:,} (option max_elements)"
            )
        return
    if opened_tags(payload) <= limit:
        return
    stream = open_payload(payload)
    seen = 0
    try:
        for _event, element in hardened_iterparse(stream, None):
            seen += 1
            if seen > limit:
                raise StepError(
                    f"the document has more than {limit:,} elements, the limit (option max_elements)",
                    where=InputLocation(element.sourceline),
                )
            _release(element)
    except (etree.XMLSyntaxError, AccessRefused):
        return  # the parse that follows reports it, with its place
    finally:
        if stream is not payload:
            stream.close()


def parse_document(payload: Any, limits: XmlLimits, *, check: bool = True) -> Any:
    """Parse an input document safely; return the ElementTree or raise StepError."""
    check_size(payload, limits)
    check_elements(payload, limits)
    parser = input_parser()
    try:
        if isinstance(payload, bytes):
            root = etree.fromstring(payload, parser)
            tree = root.getroottree()
        else:
            stream = open_payload(payload)
            try:
                tree = etree.parse(stream, parser)
            finally:
                if stream is not payload:  # an mmap payload stays open for its owner
                    stream.close()
    except etree.XMLSyntaxError as exc:
        raise syntax_error(exc, payload) from None
    except AccessRefused as exc:
        raise StepError(str(exc)) from None
    refuse_entities(tree, payload)
    if check:
        check_tree(tree.getroot(), limits)
    return tree


def iter_records(source: IO[bytes], tag: str | None, limits: XmlLimits, raw: Any = None) -> Iterator[Any]:
    """Stream elements named `tag` (Clark notation) with bounded memory: each element is
    yielded once complete and then cleared with the siblings before it.

    Streaming, libxml2 logs some errors (an over-long attribute) and goes on giving
    elements before it raises; the log is checked before each record is given, so the
    element holding the error never goes on."""
    events = hardened_iterparse(source, tag, ("end",))
    checked = False
    try:
        for _event, element in events:
            if not checked:
                refuse_entities(element.getroottree(), raw)
                checked = True
            log = events.error_log
            if len(log):
                errors = log.filter_from_errors()
                if errors:
                    first = errors[0]
                    raise parse_error(first.message, first.line or None, first.column or None, raw)
            check_tree(element, limits)
            yield element
            _release(element)
    except etree.XMLSyntaxError as exc:
        raise syntax_error(exc, raw) from None
    except AccessRefused as exc:
        raise StepError(str(exc)) from None


def _release(element: Any) -> None:
    """Free a streamed record and the siblings before it."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]
