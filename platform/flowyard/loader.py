"""Loading flow files: YAML to a validated, compiled Flow, or every problem at once.

All problems in a file are collected and reported as `FILE:LINE:COL: message`, with the
closest valid name suggested for a misspelled step, connector or option. Steps are
compiled here (expressions, templates, schemas), so a flow that loads is a flow that
runs, and nothing is compiled again per message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from . import registry
from .budget import Budget
from .connector import Connector, guess_content_type
from .definitions.grammar import (
    SOURCE_COMMON_KEYS,
    STEP_COMMON_KEYS,
    TARGET_COMMON_KEYS,
    check_header,
    describe_error,
    entry,
    entry_options,
    error_position,
    is_table,
    kind_of,
)
from .definitions.kinds import DefinitionKind, SchemaRef, find_kind
from .errors import DefinitionError, FlowyardError, Issue, IssueList, Position, did_you_mean
from .expressions import compile_expression
from .flow import (
    TOP_LEVEL_KEYS,
    ConnectorSpec,
    Flow,
    FlowTest,
    Metadata,
    RetryPolicy,
    StepSpec,
)
from .message import is_json_type
from .sandbox import make_environment
from .secrets import Secrets, check_references
from .step import SNAPSHOT_MARKER, FlowContext, OptionError, Step
from .yamlio import (
    YamlSyntaxError,
    key_position,
    load_text,
    node_start,
    scalar_text_position,
    to_plain,
    value_position,
)

FLOW_KINDS = ("Flow", "FlowInstance", "Template")


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class FlowLoader:
    """Loads one file; `issues` collects every problem found."""

    def __init__(self, path: Path, text: str | None = None, secrets: Secrets | None = None):
        self.path = path
        self.file = str(path)
        self.text = text if text is not None else path.read_text(encoding="utf-8")
        self.lines = self.text.splitlines()
        self.issues = IssueList(self.file)
        self.context = FlowContext(flow_file=path.resolve(), secrets=secrets or Secrets())

    # -- helpers -------------------------------------------------------------------
    def error(self, message: str, pos: tuple[int | None, int | None] = (None, None)) -> None:
        self.issues.add(message, pos[0], pos[1])

    def validate_model(
        self, model: type[BaseModel], node: Any, value: Any, prefix: tuple[Any, ...] = ()
    ) -> Any:
        """Validate `value` (the plain form of `node`) against `model`; map each error
        back to its key or value in the YAML."""
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors():
                self.error(describe_error(err, model), error_position(node, err, prefix))
            return None

    def check_reference_syntax(self, node: Any, path: tuple[Any, ...] = ()) -> None:
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                if isinstance(value, str) and "${" in value:
                    for offset, problem in check_references(value):
                        self.error(problem, scalar_text_position(node, key, offset, value, self.lines))
                else:
                    self.check_reference_syntax(value, (*path, key))
        elif isinstance(node, CommentedSeq):
            for index, value in enumerate(node):
                if isinstance(value, str) and "${" in value:
                    for _offset, problem in check_references(value):
                        self.error(problem, value_position(node, index))
                else:
                    self.check_reference_syntax(value, (*path, index))

    # -- the document ----------------------------------------------------------------
    def parse(self) -> Any:
        """The YAML document. A subclass may parse faster where comments are not needed
        (the UI's checks and previews), giving the same document and positions."""
        return load_text(self.text, self.file)

    def load_or_raise(self) -> Flow:
        """The flow, or DefinitionError with every issue in file order."""
        flow = self.load()
        if flow is None:
            if not self.issues.errors:
                self.error("the flow could not be loaded")
            raise DefinitionError(in_file_order(self.issues.issues))
        return flow

    def load(self) -> Flow | None:
        try:
            document = self.parse()
        except YamlSyntaxError as exc:
            self.issues.issues.append(exc.issue)
            return None
        if not isinstance(document, CommentedMap):
            self.error("a flow file must be a YAML mapping with apiVersion, kind, metadata, source, steps and targets", (1, 1))
            return None
        self.document = document
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                self.error(f"unknown section {key!r}" + did_you_mean(str(key), TOP_LEVEL_KEYS), key_position(document, key))
        kind = document.get("kind")
        hint = " (templates and instances are loaded by `flowyard render`)" if kind in FLOW_KINDS else ""
        check_header(document, "Flow", self.issues, hint=hint)
        self.check_reference_syntax(document)

        metadata = self.load_metadata(document)
        if metadata is not None:
            self.context.flow_name = metadata.name
        source = self.load_source(document)
        steps = self.load_steps(document)
        targets = self.load_targets(document)
        tests = self.load_tests(document)
        keys = self.load_keys(document)
        budget = self.load_budget(document)
        if source is not None and steps is not None:
            self.check_payload_kinds(source, steps)
        if self.issues.errors or metadata is None or source is None or steps is None or targets is None:
            return None
        return Flow(
            path=self.path,
            name=metadata.name,
            metadata=metadata,
            source=source,
            steps=steps,
            targets=targets,
            tests=tests,
            keys=keys,
            sla=to_plain(document.get("sla") or {}),
            budget=budget,
            version=content_hash(self.text),
            document=document,
            text=self.text,
        )

    def load_budget(self, document: CommentedMap) -> Budget:
        node = document.get("budget")
        if node is None:
            return Budget()
        if not isinstance(node, CommentedMap):
            self.error("budget must be a mapping such as {time: 30s, memory: 1GB}",
                       value_position(document, "budget"))
            return Budget()
        parsed: Budget | None = self.validate_model(Budget, node, to_plain(node))
        return parsed or Budget()

    def load_metadata(self, document: CommentedMap) -> Metadata | None:
        node = document.get("metadata")
        if node is None:
            self.error("missing section 'metadata' (with at least a name)", (1, 1))
            return None
        if not isinstance(node, CommentedMap):
            self.error("metadata must be a mapping", value_position(document, "metadata"))
            return None
        result: Metadata | None = self.validate_model(Metadata, node, to_plain(node))
        return result

    def connector_entry(
        self, node: Any, where: str, common: tuple[str, ...], role: str
    ) -> tuple[str, type[Connector], Any, Any] | None:
        """Find the one connector key of a source or target mapping."""
        if not isinstance(node, CommentedMap) or not node:
            self.error(f"{where} must be a mapping with one connector, e.g. `file: {{path: in}}`", node_start(node) if node is not None else (None, None))
            return None
        names = registry.connector_names()
        found = entry(node, common)
        keys = found.keys if found is not None else []
        if len(keys) != 1:
            listed = ", ".join(keys) or "none"
            self.error(f"{where} needs exactly one connector (found: {listed}); connectors: {', '.join(names)}", node_start(node))
            return None
        kind = keys[0]
        if kind not in names:
            self.error(f"unknown connector {kind!r}" + did_you_mean(kind, names), key_position(node, kind))
            return None
        try:
            cls = registry.connector_class(kind)
        except FlowyardError as exc:
            self.error(str(exc), key_position(node, kind))
            return None
        options_model = cls.SourceOptions if role == "source" else cls.TargetOptions
        if options_model is None:
            self.error(f"connector {kind!r} cannot be used as a {role}", key_position(node, kind))
            return None
        raw = node[kind]
        value = to_plain(raw) if raw is not None else {}
        if not isinstance(value, dict):
            self.error(f"the options of {kind!r} must be a mapping", value_position(node, kind))
            return None
        options = self.validate_model(options_model, raw if isinstance(raw, CommentedMap) else node, value, () if isinstance(raw, CommentedMap) else (kind,))
        if isinstance(raw, CommentedMap):
            self.check_templates(raw, kind)
        return kind, cls, options, raw

    def check_templates(self, node: Any, kind: str, path: tuple[str, ...] = ()) -> None:
        """Compile every Jinja template in a connector's options (a file name, a topic, a
        subject, a routing key, a URL, a header...): a syntax error is the flow's, reported
        here at its line, not by the runtime when the connector opens."""
        items = node.items() if isinstance(node, CommentedMap) else enumerate(node) if isinstance(node, CommentedSeq) else []
        for key, value in items:
            if isinstance(value, CommentedMap | CommentedSeq):
                self.check_templates(value, kind, (*path, str(key)))
            elif isinstance(value, str) and ("{{" in value or "{%" in value):
                problem = template_syntax_error(value)
                if problem is not None:
                    line_in_value, message = problem
                    line, column = value_position(node, key)
                    if line is not None and line_in_value > 1:
                        line, column = line + line_in_value - 1, None
                    option = ".".join((*path, str(key)))
                    self.error(f"{kind}: Jinja syntax error in option {option!r}: {message}", (line, column))

    def load_source(self, document: CommentedMap) -> ConnectorSpec | None:
        if "source" not in document:
            self.error("missing section 'source' (one connector the messages come from)", (1, 1))
            return None
        node = document["source"]
        found = self.connector_entry(node, "source", SOURCE_COMMON_KEYS, "source")
        if found is None:
            return None
        kind, _cls, options, _raw = found
        if options is None:
            return None
        line, col = key_position(node, kind)
        return ConnectorSpec(kind=kind, options=options, position=Position(self.file, line, col))

    def load_targets(self, document: CommentedMap) -> list[ConnectorSpec] | None:
        node = document.get("targets")
        if node is None:
            self.error("missing section 'targets' (one or more connectors the results go to)", (1, 1))
            return None
        if not isinstance(node, CommentedSeq) or not node:
            self.error("targets must be a list with at least one connector", value_position(document, "targets"))
            return None
        targets: list[ConnectorSpec] = []
        for index, item in enumerate(node):
            found = self.connector_entry(item, f"target {index + 1}", TARGET_COMMON_KEYS, "target")
            if found is None:
                continue
            kind, _cls, options, _raw = found
            retry = RetryPolicy()
            if "retry" in item:
                retry_node = item["retry"]
                parsed = self.validate_model(RetryPolicy, retry_node if isinstance(retry_node, CommentedMap) else item, to_plain(retry_node) or {}, () if isinstance(retry_node, CommentedMap) else ("retry",))
                retry = parsed or retry
            condition = None
            when = item.get("when")
            if when is not None:
                condition = self.compile_condition(item, when)
            name = str(item.get("name") or f"{kind}-{index + 1}")
            line, col = key_position(item, kind)
            if options is not None:
                targets.append(ConnectorSpec(kind=kind, options=options, position=Position(self.file, line, col), name=name, when=str(when) if when is not None else None, retry=retry, condition=condition))
        names = [t.name for t in targets]
        for name in {n for n in names if names.count(n) > 1}:
            self.error(f"two targets are named {name!r}; target names must be unique", value_position(document, "targets"))
        return targets

    def compile_condition(self, node: CommentedMap, when: Any) -> Any:
        if not isinstance(when, str):
            self.error("`when` must be a JMESPath expression (a string)", value_position(node, "when"))
            return None
        try:
            return compile_expression(when, "when")
        except OptionError as exc:
            self.error(exc.message, scalar_text_position(node, "when", exc.offset or 0, when, self.lines))
            return None

    def load_steps(self, document: CommentedMap) -> list[StepSpec] | None:
        node = document.get("steps")
        if node is None:
            return []
        if not isinstance(node, CommentedSeq):
            self.error("steps must be a list; each item is `- STEP: OPTIONS`", value_position(document, "steps"))
            return None
        steps: list[StepSpec] = []
        used_names: set[str] = set()
        for index, item in enumerate(node):
            spec = self.load_step(node, index, item)
            if spec is None:
                continue
            if spec.name in used_names:
                self.error(f"two steps are named {spec.name!r}; step names must be unique", (spec.position.line and (spec.position.line, spec.position.column)) or (None, None))
            used_names.add(spec.name)
            steps.append(spec)
        return steps

    def load_step(self, seq: CommentedSeq, index: int, item: Any) -> StepSpec | None:
        pos = value_position(seq, index)
        if not isinstance(item, CommentedMap):
            self.error("a step is written `- STEP: OPTIONS`, e.g. `- jmespath: \"{id: order_id}\"`", pos)
            return None
        names = registry.step_names()
        keys = entry(item, STEP_COMMON_KEYS).keys  # type: ignore[union-attr]  # item is a mapping
        if len(keys) != 1:
            found = ", ".join(keys) or "none"
            self.error(f"a step needs exactly one step name (found: {found})", pos)
            return None
        kind = keys[0]
        kpos = key_position(item, kind)
        if kind not in names:
            self.error(f"unknown step {kind!r}" + did_you_mean(kind, names), kpos)
            return None
        try:
            cls = registry.step_class(kind)
        except FlowyardError as exc:
            self.error(str(exc), kpos)
            return None
        raw = item[kind]
        options_node: Any = raw if isinstance(raw, CommentedMap) else item
        prefix: tuple[Any, ...] = () if isinstance(raw, CommentedMap) else (kind,)
        value = entry_options(raw, cls.main_option)
        if value is None:
            self.error(f"step {kind!r} takes a mapping of options", value_position(item, kind))
            return None
        options = self.validate_model(cls.Options, options_node, value, prefix)
        name = str(item.get("name") or f"{index + 1}-{kind}")
        condition = None
        when = item.get("when")
        if when is not None:
            condition = self.compile_condition(item, when)
        if options is None:
            return None
        step = self.compile_step(cls, options, item, kind, raw)
        if step is None:
            return None
        return StepSpec(kind=kind, options=options, name=name, when=str(when) if when is not None else None, position=Position(self.file, kpos[0], kpos[1]), index=index, step=step, condition=condition)

    def compile_step(self, cls: type[Step], options: Any, item: CommentedMap, kind: str, raw: Any) -> Step | None:
        try:
            return cls(options, self.context)
        except OptionError as exc:
            self.error(exc.message, self.option_position(item, kind, raw, exc))
        except FlowyardError as exc:
            self.error(str(exc), key_position(item, kind))
        return None

    def option_position(self, item: CommentedMap, kind: str, raw: Any, exc: OptionError) -> tuple[int | None, int | None]:
        """Where an OptionError points: the option's value, or inside it."""
        node, key = (raw, exc.option) if isinstance(raw, CommentedMap) and exc.option in raw else (item, kind)
        value = node[key]
        if isinstance(value, str):
            if exc.offset is not None:
                return scalar_text_position(node, key, exc.offset, value, self.lines)
            if exc.line_in_value is not None:
                offset = sum(len(line) + 1 for line in value.split("\n")[: exc.line_in_value - 1])
                return scalar_text_position(node, key, offset, value, self.lines)
        return value_position(node, key)

    def load_tests(self, document: CommentedMap) -> list[FlowTest]:
        node = document.get("tests")
        if node is None:
            return []
        if not isinstance(node, CommentedSeq):
            self.error("tests must be a list of cases with name, input and expect", value_position(document, "tests"))
            return []
        tests: list[FlowTest] = []
        # a deployment snapshot holds what runs, not the tests' files (its gate reads
        # those where it was deployed from)
        check_files = not (self.context.base_dir / SNAPSHOT_MARKER).exists()
        for index, item in enumerate(node):
            if not isinstance(item, CommentedMap):
                self.error("a test case is a mapping with name, input and expect", value_position(node, index))
                continue
            case = self.validate_model(FlowTest, item, to_plain(item))
            if case is None:
                continue
            for key in ("input", "expect") if check_files else ():
                value = getattr(case, key)
                for rel in [value] if isinstance(value, str) else (value or []):
                    if not (self.context.base_dir / rel).is_file():
                        self.error(f"test {case.name!r}: {key} file {rel!r} does not exist", value_position(item, key))
            tests.append(case)
        return tests

    def load_keys(self, document: CommentedMap) -> dict[str, str]:
        node = document.get("keys")
        if node is None:
            return {}
        if not isinstance(node, CommentedMap):
            self.error("keys must map a business key name to a JMESPath expression", value_position(document, "keys"))
            return {}
        keys: dict[str, str] = {}
        for key, expr in node.items():
            if not isinstance(expr, str):
                self.error(f"key {key!r}: expected a JMESPath expression", value_position(node, key))
                continue
            try:
                compile_expression(expr, str(key))
            except OptionError as exc:
                self.error(f"key {key!r}: {exc.message}", scalar_text_position(node, key, exc.offset or 0, expr, self.lines))
                continue
            keys[str(key)] = expr
        return keys

    def check_payload_kinds(self, source: ConnectorSpec, steps: list[StepSpec]) -> None:
        """Bytes and data must meet: a data step after bytes needs a JSON content type,
        a bytes step after data is a configuration error."""
        kind = "bytes"
        content_type: str | None = getattr(source.options, "content_type", None)
        if content_type is None:
            pattern = getattr(source.options, "pattern", None)
            if isinstance(pattern, str) and "." in pattern:
                guessed = guess_content_type(pattern)
                content_type = guessed if guessed != "application/octet-stream" else None
        producer = f"the source ({source.kind})"
        for spec in steps:
            cls = type(spec.step)
            pos = (spec.position.line, spec.position.column)
            if cls.takes == "bytes" and kind == "data":
                self.error(f"step {spec.kind!r} takes bytes but {producer} gives data; render it first (json.render, csv.render or jinja)", pos)
            elif cls.takes == "data" and kind == "bytes" and content_type is not None and not is_json_type(content_type):
                self.error(f"step {spec.kind!r} takes data but {producer} gives {content_type} bytes; parse them first (json.parse, csv.parse, xml.parse or x12.parse)", pos)
            if cls.gives != "any":
                kind = cls.gives
            output_type: Callable[[], str | None] | None = getattr(spec.step, "output_content_type", None)
            content_type = output_type() if output_type else None
            producer = f"step {spec.name!r}"


def load_flow(path: Path | str, text: str | None = None, secrets: Secrets | None = None) -> Flow:
    """Load a flow file (or a file of a registered kind that renders to a flow, such as a
    FlowInstance); raise DefinitionError listing every problem."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise DefinitionError([Issue(Position(str(path)), f"cannot read the flow file: {reason}")]) from exc
    kind = kind_of(text)
    if kind not in (None, "Flow"):
        other = find_kind(kind)
        flow = other.flow(path, text) if other is not None else None
        if flow is not None:
            return flow
    return FlowLoader(path, text, secrets).load_or_raise()


def load_flows(path: Path | str, text: str | None = None) -> list[Flow]:
    """Every flow a file stands for (a Flow: itself; a FlowInstance whose template gives
    several flows: each of them); DefinitionError listing every problem."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return [load_flow(path)]  # the same error
    kind = kind_of(text)
    other = find_kind(kind) if kind not in (None, "Flow") else None
    if other is not None:
        found = other.flows(path, text)
        if found:
            return found
    return [load_flow(path, text)]


def check_flow(path: Path | str, text: str | None = None) -> list[Any]:
    """Every issue in a flow file (empty when valid)."""
    loader = FlowLoader(Path(path), text)
    loader.load()
    return in_file_order(loader.issues.issues)


def in_file_order(issues: list[Issue]) -> list[Issue]:
    return sorted(issues, key=lambda i: (i.position.line or 0, i.position.column or 0))


class FlowKind(DefinitionKind):
    """`kind: Flow`, and a YAML definition with no `kind:` outside `tables/` (reported as
    a flow with a wrong header)."""

    kind = "Flow"
    order = 0
    runs = True

    @classmethod
    def recognises(cls, path: Path, kind: str | None) -> bool:
        return kind in (None, "Flow") and not is_table(path)

    @classmethod
    def load(cls, path: Path, text: str) -> Flow:
        return FlowLoader(path, text).load_or_raise()

    @classmethod
    def check(cls, path: Path, text: str) -> list[Issue]:
        return check_flow(path, text)

    @classmethod
    def flow(cls, path: Path, text: str) -> Flow:
        return cls.load(path, text)

    @classmethod
    def schema(cls, ref: SchemaRef) -> dict[str, Any]:
        from .schema_gen import flow_schema

        return flow_schema(ref)


def template_syntax_error(source: str) -> tuple[int, str] | None:
    """(line in the text, message) of the first Jinja syntax error in `source`, or None."""
    try:
        template_environment().parse(source)
    except TemplateSyntaxError as exc:
        return exc.lineno or 1, exc.message or "invalid template"
    return None


@cache
def template_environment() -> Any:
    return make_environment(autoescape=False)
