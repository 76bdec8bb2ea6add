"""Semantic diff of two flow versions, in words, for review.

A line diff of YAML shows which lines moved; a reviewer wants to know which steps were
added, removed, moved or changed, which mapping fields changed, which connectors and
options changed. `compare(old, new)` takes two flow documents (plain data) and returns
`Change`s, each a sentence about one thing. Steps are matched by name (or by kind and
occurrence when unnamed), targets by name; a JMESPath multiselect mapping
(`{order_id: AUFNR, ...}`) is compared field by field.

`flowyard diff A B` prints them; A or B may be `REV:path` (read with `git show`), and an
instance is compared as the flow it renders to.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .definitions import grammar
from .definitions.grammar import STEP_COMMON_KEYS, TARGET_COMMON_KEYS
from .definitions.kinds import find_kind
from .errors import DefinitionError, FlowyardError
from .mapping import field_changes
from .secrets import redactor
from .yamlio import YamlSyntaxError, load_text, to_plain

SHORT = 120  # values longer than this (or multi-line) are summarised, not quoted


@dataclass
class Change:
    sign: str  # "+" added, "-" removed, "~" changed, ">" moved
    subject: str  # "step 'units of measure'", "target 'mes'", "source", "metadata"
    text: str

    def __str__(self) -> str:
        return f"{self.sign} {self.subject}: {self.text}"


# -- values in words -------------------------------------------------------------------


def show(value: Any) -> str:
    if isinstance(value, str):
        if "\n" in value.strip() or len(value) > SHORT:
            first = value.strip().splitlines()[0] if value.strip() else ""
            return repr(first[:SHORT] + "...")
        return repr(value)
    if isinstance(value, dict | list):
        text = repr(value)
        return text if len(text) <= SHORT else f"{type(value).__name__} of {len(value)}"
    return repr(value)


def changed_text(old: Any, new: Any) -> str:
    if isinstance(old, str) and isinstance(new, str) and ("\n" in old.strip() or "\n" in new.strip() or max(len(old), len(new)) > SHORT):
        lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0))
        changed = [line for line in lines[2:] if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        return f"changed ({sum(1 for c in changed if c[0] == '-')} line(s) removed, {sum(1 for c in changed if c[0] == '+')} added)"
    return f"changed from {show(old)} to {show(new)}"


def dict_changes(old: Any, new: Any, label: str = "option") -> list[str]:
    """Sentences for the differences of two option mappings (recursing into mappings)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        if old == new:
            return []
        if isinstance(old, str) and isinstance(new, str):
            fields = field_changes(old, new)
            if fields is not None:
                return [f"mapping: {f}" for f in fields] or ["mapping layout changed"]
        return [f"{label} {changed_text(old, new)}"]
    out: list[str] = []
    for key in new:
        if key not in old:
            out.append(f"{label} {key!r} added: {show(new[key])}")
    for key in old:
        if key not in new:
            out.append(f"{label} {key!r} removed (was {show(old[key])})")
    for key in old:
        if key in new and old[key] != new[key]:
            if isinstance(old[key], dict) and isinstance(new[key], dict):
                out.extend(dict_changes(old[key], new[key], f"{label} {key!r}:"))
                continue
            fields = field_changes(old[key], new[key]) if isinstance(old[key], str) and isinstance(new[key], str) else None
            if fields is not None:
                out.extend(f"mapping {key!r}: {f}" for f in fields)
            else:
                out.append(f"{label} {key!r} {changed_text(old[key], new[key])}")
    return out


# -- flow sections ------------------------------------------------------------------------


@dataclass
class Item:
    """A step or a target, reduced to what identifies and configures it."""

    ident: str
    kind: str
    label: str
    options: Any
    common: dict[str, Any]


def _one_key(item: Any, common: tuple[str, ...]) -> tuple[str, Any]:
    found = grammar.entry(item, common)
    if found is None:
        return "?", item
    return (found.kind, found.options) if found.kind is not None else ("?", {k: v for k, v in item.items() if k not in common})


def steps_of(document: dict[str, Any]) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for entry in document.get("steps") or []:
        kind, options = _one_key(entry, STEP_COMMON_KEYS)
        name = entry.get("name") if isinstance(entry, dict) else None
        if name:
            ident, label = f"name:{name}", f"step {name!r}"
        else:
            seen[kind] = seen.get(kind, 0) + 1
            ident = f"kind:{kind}#{seen[kind]}"
            label = f"step {kind!r}" + (f" #{seen[kind]}" if seen[kind] > 1 else "")
        common = {k: entry[k] for k in STEP_COMMON_KEYS if isinstance(entry, dict) and k in entry and k != "name"}
        items.append(Item(ident, kind, label, options, common))
    return items


def targets_of(document: dict[str, Any]) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(document.get("targets") or [], 1):
        kind, options = _one_key(entry, TARGET_COMMON_KEYS)
        name = entry.get("name") if isinstance(entry, dict) else None
        if name:
            ident = f"name:{name}"
        else:  # unnamed: matched by kind and occurrence, shown by the loader's default name
            seen[kind] = seen.get(kind, 0) + 1
            ident, name = f"kind:{kind}#{seen[kind]}", f"{kind}-{index}"
        common = {k: entry[k] for k in TARGET_COMMON_KEYS if isinstance(entry, dict) and k in entry and k != "name"}
        items.append(Item(ident, kind, f"target {name!r}", options, common))
    return items


def item_changes(old: Item, new: Item) -> list[Change]:
    out: list[Change] = []
    if old.kind != new.kind:
        out.append(Change("~", new.label, f"now {new.kind!r} (was {old.kind!r}) with options {show(new.options)}"))
        return out
    subject = new.label if new.ident.startswith("kind:") and new.label.startswith("step") else f"{new.label} ({new.kind})"
    for sentence in dict_changes(old.options, new.options):
        out.append(Change("~", subject, sentence))
    when_old, when_new = old.common.get("when"), new.common.get("when")
    if when_old != when_new:
        if when_old is None:
            out.append(Change("~", new.label, f"now runs only when {when_new!r}"))
        elif when_new is None:
            out.append(Change("~", new.label, f"no longer conditional (was when {when_old!r})"))
        else:
            out.append(Change("~", new.label, f"condition changed from {when_old!r} to {when_new!r}"))
    retry_old, retry_new = old.common.get("retry") or {}, new.common.get("retry") or {}
    for sentence in dict_changes(retry_old, retry_new, "retry"):
        out.append(Change("~", new.label, sentence))
    return out


def list_changes(old: list[Item], new: list[Item], what: str) -> list[Change]:
    out: list[Change] = []
    old_ids, new_ids = [i.ident for i in old], [i.ident for i in new]
    matcher = difflib.SequenceMatcher(a=old_ids, b=new_ids, autojunk=False)
    matched: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            matched[block.a + k] = block.b + k
    by_id_new = {item.ident: j for j, item in enumerate(new)}
    unmatched_old = [i for i in range(len(old)) if i not in matched]
    unmatched_new = {j for j in range(len(new)) if j not in matched.values()}
    moved: dict[int, int] = {}
    for i in unmatched_old:
        j = by_id_new.get(old[i].ident)
        if j is not None and j in unmatched_new:
            moved[i] = j
            unmatched_new.discard(j)
    renamed: dict[int, int] = {}
    for i in unmatched_old:
        if i in moved:
            continue
        # an unnamed-to-named (or renamed) item of the same kind at the same place
        for j in sorted(unmatched_new):
            if new[j].kind == old[i].kind and (j == i or abs(j - i) <= 1):
                renamed[i] = j
                unmatched_new.discard(j)
                break
    for i in range(len(old)):
        if i in matched:
            out.extend(item_changes(old[i], new[matched[i]]))
        elif i in moved:
            j = moved[i]
            out.append(Change(">", new[j].label, f"moved from position {i + 1} to {j + 1}"))
            out.extend(item_changes(old[i], new[j]))
        elif i in renamed:
            j = renamed[i]
            out.append(Change("~", old[i].label, f"renamed to {new[j].label.split(' ', 1)[1]}"))
            out.extend(item_changes(old[i], new[j]))
        else:
            out.append(Change("-", old[i].label, f"removed ({old[i].kind}, was {what} {i + 1})"))
    for j in sorted(unmatched_new):
        out.append(Change("+", new[j].label, f"added as {what} {j + 1} ({new[j].kind} {show(new[j].options)})"))
    return out


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every difference between two flow documents, in words."""
    out: list[Change] = []
    for sentence in dict_changes(old.get("metadata") or {}, new.get("metadata") or {}, "metadata"):
        out.append(Change("~", "metadata", sentence))
    src_old, src_new = old.get("source") or {}, new.get("source") or {}
    k_old, o_old = _one_key(src_old, ())
    k_new, o_new = _one_key(src_new, ())
    if k_old != k_new:
        out.append(Change("~", "source", f"connector changed from {k_old!r} to {k_new!r} ({show(o_new)})"))
    else:
        for sentence in dict_changes(o_old or {}, o_new or {}):
            out.append(Change("~", f"source ({k_new})", sentence))
    out.extend(list_changes(steps_of(old), steps_of(new), "step"))
    out.extend(list_changes(targets_of(old), targets_of(new), "target"))
    tests_old = {t.get("name", str(i)): t for i, t in enumerate(old.get("tests") or []) if isinstance(t, dict)}
    tests_new = {t.get("name", str(i)): t for i, t in enumerate(new.get("tests") or []) if isinstance(t, dict)}
    for name in tests_new:
        if name not in tests_old:
            out.append(Change("+", f"test {name!r}", "added"))
    for name in tests_old:
        if name not in tests_new:
            out.append(Change("-", f"test {name!r}", "removed"))
        elif tests_old[name] != tests_new[name]:
            for sentence in dict_changes(tests_old[name], tests_new[name]):
                out.append(Change("~", f"test {name!r}", sentence))
    known = {"apiVersion", "kind", "metadata", "source", "steps", "targets", "tests"}
    for key in [*old, *[k for k in new if k not in old]]:
        if key in known or old.get(key) == new.get(key):
            continue
        if key not in new:
            out.append(Change("-", str(key), "section removed"))
        elif key not in old:
            out.append(Change("+", str(key), f"section added: {show(new[key])}"))
        else:
            for sentence in dict_changes(old[key], new[key], "entry"):
                out.append(Change("~", str(key), sentence))
    return out


# -- reading versions ---------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def git_root(start: Path | None = None) -> Path:
    result = git("rev-parse", "--show-toplevel", cwd=start)
    if result.returncode != 0:
        raise FlowyardError("not inside a git repository (git rev-parse failed)")
    return Path(result.stdout.strip())


def git_base(rev: str, root: Path | None = None) -> str | None:
    """`rev` when git knows it; None when the repository has no commits yet (its first
    commit is being made: compare with an empty tree, every file is new). A revision git
    does not know in a repository that has commits is an error."""
    if git("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}", cwd=root).returncode == 0:
        return rev
    if git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=root).returncode != 0:
        git_root(root)  # not a repository at all: say so
        return None
    raise FlowyardError(f"unknown git revision {rev!r}")


def git_show(rev: str, path: Path) -> str | None:
    """The text of `path` at `rev`, or None when it did not exist there."""
    root = git_root(path.resolve().parent if path.resolve().parent.exists() else None)
    rel = path.resolve().relative_to(root).as_posix()
    result = git("show", f"{rev}:{rel}", cwd=root)
    if result.returncode != 0:
        if "does not exist" in result.stderr or "exists on disk, but not in" in result.stderr:
            return None
        if "invalid object name" in result.stderr or "unknown revision" in result.stderr or "bad revision" in result.stderr:
            raise FlowyardError(f"unknown git revision {rev!r}")
        return None
    return result.stdout


def read_spec(spec: str) -> tuple[Path, str, str | None]:
    """A file argument: `path` or `REV:path`; (path, text, rev)."""
    if ":" in spec and not Path(spec).exists():
        rev, _, rel = spec.partition(":")
        path = Path(rel)
        text = git_show(rev, path)
        if text is None:
            raise FlowyardError(f"{rel} does not exist at {rev}")
        return path, text, rev
    path = Path(spec)
    if not path.is_file():
        raise FlowyardError(f"{spec}: no such file")
    return path, path.read_text(encoding="utf-8"), None


def flow_document(path: Path, text: str, rev: str | None = None) -> dict[str, Any]:
    """The flow a file stands for, as plain data: a Flow as written, an instance rendered
    (with its template at the same revision when it is in git there)."""
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError as exc:
        raise DefinitionError([exc.issue]) from exc
    kind = find_kind(str(document.get("kind"))) if isinstance(document, dict) and document.get("kind") not in (None, "Flow") else None
    rendered = kind.flow_document(path, text, rev) if kind is not None else None
    if rendered is not None:
        document = rendered
    plain = to_plain(document)
    if not isinstance(plain, dict):
        raise FlowyardError(f"{path} is not a flow (a YAML mapping)")
    return plain


def main(a: str, b: str, text: bool = False) -> int:
    path_a, text_a, rev_a = read_spec(a)
    path_b, text_b, rev_b = read_spec(b)
    old = flow_document(path_a, text_a, rev_a)
    new = flow_document(path_b, text_b, rev_b)
    changes = compare(old, new)
    for change in changes:
        print(redactor.redact(str(change)))
    if text:
        from .yamlio import dump_text

        lines = difflib.unified_diff(dump_text(old).splitlines(True), dump_text(new).splitlines(True), fromfile=a, tofile=b)
        sys.stdout.writelines(redactor.redact(line) for line in lines)
    if not changes:
        print("no changes", file=sys.stderr)
        return 0
    print(f"{len(changes)} change(s)", file=sys.stderr)
    return 1


def git_external(args: list[str]) -> int:
    """`flowyard diff --git`, git's external diff driver: git passes PATH OLD-FILE OLD-HEX
    OLD-MODE NEW-FILE NEW-HEX NEW-MODE. Flows and instances are shown in words (an
    instance rendered with the template in the working tree); other files as a line
    diff. Always exits 0, as git expects of a diff driver.

    Set up in a flows repository with `git config diff.flowyard.command "flowyard diff
    --git"` and a `.gitattributes` line `*.yaml diff=flowyard`."""
    if len(args) < 7:
        print(f"* Unmerged path {args[0] if args else '?'}")
        return 0
    path, old_file, new_file = Path(args[0]), args[1], args[4]
    old_text = Path(old_file).read_text(encoding="utf-8") if old_file != "/dev/null" else ""
    new_text = Path(new_file).read_text(encoding="utf-8") if new_file != "/dev/null" else ""
    print(f"flowyard diff a/{path} b/{path}")
    try:
        if not old_text.strip() or not new_text.strip():
            raise FlowyardError("added or removed")
        old = flow_document(path, old_text)
        new = flow_document(path, new_text)
        if not any(isinstance(d.get("steps"), list) or "source" in d for d in (old, new)):
            raise FlowyardError("not a flow")
        changes = compare(old, new)
        for change in changes:
            print(redactor.redact(f"  {change}"))
        if not changes:
            print("  no change to the flow (layout or comments only)")
        return 0
    except (FlowyardError, DefinitionError, OSError):
        pass
    lines = difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True), fromfile=f"a/{path}", tofile=f"b/{path}")
    sys.stdout.writelines(redactor.redact(line) for line in lines)
    return 0
