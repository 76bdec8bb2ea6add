"""The flow model: what a loaded, validated flow file is.

The loader builds these from the YAML document; the engine and the runtime consume
them. Top-level sections that are plain data (metadata, retry policy, tests) are typed
models here, so the JSON Schema and the docs come from the same declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from .budget import Budget
from .errors import Position
from .options import Duration, Options

ApiVersion = Literal["flowyard/v1"]
API_VERSION: ApiVersion = get_args(ApiVersion)[0]
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class Metadata(Options):
    name: str = Field(pattern=NAME_PATTERN, max_length=100, description="unique flow name: lower-case letters, digits and dashes")
    description: str = Field("", description="what the flow does, in one line")
    labels: dict[str, str] = Field(default_factory=dict, description="plant, partner, domain ... used to filter flows and runs")


class RetryPolicy(Options):
    """How a target's delivery is retried before the message becomes a dead letter."""

    attempts: int = Field(5, ge=1, le=1000, description="delivery attempts in all, the first included")
    backoff: Duration = Field("1s", description="wait before the second attempt; doubles each time")  # type: ignore[assignment]
    max_backoff: Duration = Field("5m", description="the longest wait between two attempts")  # type: ignore[assignment]
    jitter: bool = Field(True, description="randomise waits so retries of many messages spread out")


class FlowTest(Options):
    """A test case run by `flowyard test`: an input file and the expected output(s)."""

    name: str = Field(description="what the case shows")
    input: str = Field(description="input file, relative to the flow file")
    expect: str | list[str] | None = Field(None, description="expected output file (or one per output message, in order)")
    expect_error: str | None = Field(None, description="the case passes when processing fails with a message containing this text")
    source: dict[str, Any] = Field(default_factory=dict, description="source metadata the input arrives with (file name, topic, headers)")


TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "source", "steps", "targets", "tests", "keys", "sla",
                  "budget")


@dataclass
class StepSpec:
    kind: str
    options: Any
    name: str
    when: str | None
    position: Position
    index: int
    step: Any = None  # the compiled Step instance
    condition: Any = None  # the compiled `when:` expression


@dataclass
class ConnectorSpec:
    kind: str
    options: Any
    position: Position
    name: str = ""
    when: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    condition: Any = None


@dataclass
class Flow:
    path: Path
    name: str
    metadata: Metadata
    source: ConnectorSpec
    steps: list[StepSpec]
    targets: list[ConnectorSpec]
    tests: list[FlowTest]
    version: str
    keys: dict[str, str] = field(default_factory=dict)
    sla: dict[str, Any] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)  # unset parts: the runtime's defaults
    document: Any = None  # the round-trip YAML document, for saving with comments kept
    text: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels
