"""Trading partner profiles: `flows/partners/NAME.yaml`, `kind: Partner`.

One file per partner says who we are to them and who they are (ISA/GS ids and
qualifiers), how we write to them (separators, version, test or production), which
acknowledgments each side sends and by when, and what to do with a duplicate
interchange. `x12.parse` and `x12.generate` take `partner: NAME`.

    apiVersion: flowyard/v1
    kind: Partner
    metadata: {name: supplierx}
    interchange:
      us: "ZZ:ACMEBUYER"          # ISA05:ISA06 when we send, ISA07:ISA08 when they send
      them: "ZZ:SUPPLIERX"
      usage: P                    # ISA15: T test, P production
      version: "00401"            # ISA12
      separators: {element: "*", component: ">", segment: "~", repetition: "^"}
    group: {us: ACMEBUYER, them: SUPPLIERX, version: "004010"}
    acknowledgments:
      send: "997"                 # what x12.parse {acknowledge: partner} sends back (none, 997, 999)
      expect: "997"               # outbound sets wait for it ...
      deadline: 24h               # ... this long, then they are flagged overdue
      ta1: errors                 # TA1 interchange acknowledgment: never, errors, always
    duplicates: {action: reject, window: 30d}   # reject (with TA1 025), warn, allow
    unguided: refuse              # a set no guide covers: refuse (AK5 R 1) or accept (read structurally)
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from ..definitions.grammar import error_location, error_position
from ..definitions.kinds import DefinitionKind
from ..errors import DefinitionError, Issue, Position
from ..options import Duration, Options
from ..yamlio import YamlSyntaxError, load_text, locate, to_plain

_PARTY = re.compile(r"^[0-9A-Z]{2}:[^:]{1,15}$")


class SeparatorOptions(Options):
    element: str = Field("*", min_length=1, max_length=1, description="element separator (ISA position 4)")
    component: str = Field(">", min_length=1, max_length=1, description="component separator (ISA16)")
    segment: str = Field("~", min_length=1, max_length=1, description="segment terminator")
    repetition: str = Field("^", min_length=1, max_length=1, description="repetition separator (ISA11, version 00402 and later)")

    @field_validator("element", "component", "segment", "repetition")
    @classmethod
    def _not_alphanumeric(cls, value: str) -> str:
        if value.isalnum() or value == " ":
            raise ValueError("a separator cannot be a letter, a digit or a space")
        return value


def party(value: str) -> str:
    if not _PARTY.match(value):
        raise ValueError(f"{value!r} is not QUALIFIER:ID (ISA05/ISA06 like ZZ:ACMEBUYER; 2-character qualifier, id up to 15)")
    return value


class InterchangeProfile(Options):
    us: str = Field(description="our QUALIFIER:ID (ISA05:ISA06 of what we send)")
    them: str = Field(description="the partner's QUALIFIER:ID")
    usage: Literal["T", "P"] = Field("P", description="ISA15 of what we send: T test, P production")
    version: str = Field("00401", pattern=r"^\d{5}$", description="ISA12 of what we send")
    separators: SeparatorOptions = Field(default_factory=SeparatorOptions, description="delimiters of what we send")
    newline: bool = Field(True, description="write a line break after each segment terminator")

    @field_validator("us", "them")
    @classmethod
    def _party(cls, value: str) -> str:
        return party(value)


class GroupProfile(Options):
    us: str | None = Field(None, description="GS02 of what we send (default: our ISA id)")
    them: str | None = Field(None, description="GS03 of what we send (default: their ISA id)")
    version: str = Field("004010", description="GS08 of what we send")


class AckProfile(Options):
    send: Literal["none", "997", "999"] = Field("997", description="functional acknowledgment x12.parse sends back with `acknowledge: partner`")
    expect: Literal["none", "997", "999"] = Field("none", description="acknowledgment we expect for what we send")
    deadline: Duration = Field(timedelta(hours=24), description="how long an outbound set may wait for its acknowledgment")
    ta1: Literal["never", "errors", "always"] = Field("errors", description="when to send a TA1 interchange acknowledgment")


class DuplicateProfile(Options):
    action: Literal["reject", "warn", "allow"] = Field("reject", description="an interchange received twice: reject (TA1 025), warn, allow")
    window: Duration = Field(timedelta(days=30), description="how long a received ISA13 is remembered")


class PartnerProfile(Options):
    apiVersion: str = "flowyard/v1"
    kind: Literal["Partner"] = "Partner"
    metadata: dict[str, str]
    interchange: InterchangeProfile
    group: GroupProfile = Field(default_factory=GroupProfile)
    acknowledgments: AckProfile = Field(default_factory=AckProfile)
    duplicates: DuplicateProfile = Field(default_factory=DuplicateProfile)
    unguided: Literal["refuse", "accept"] = Field(
        "refuse",
        description="a transaction set or version no guide covers: refuse it (AK5/IK5 R 1, transaction set not supported) "
                    "or accept it (AK5/IK5 A; read structurally, envelopes checked, content not validated; "
                    "x12.generate writes it from `segments`)",
    )

    @property
    def name(self) -> str:
        return self.metadata.get("name", "")


class PartnerError(DefinitionError):
    """A partner profile is invalid or missing."""


_cache: dict[tuple[str, float], PartnerProfile] = {}


def load_partner(path: Path) -> PartnerProfile:
    key = (str(path.resolve()), path.stat().st_mtime)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    issues = _check(path, path.read_text(encoding="utf-8"))
    if issues:
        raise PartnerError(issues)
    document = load_text(path.read_text(encoding="utf-8"), str(path))
    profile = PartnerProfile.model_validate(to_plain(document))
    _cache[key] = profile
    return profile


def _check(path: Path, text: str) -> list[Issue]:
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError as exc:
        return [exc.issue]
    try:
        profile = PartnerProfile.model_validate(to_plain(document))
    except ValidationError as exc:
        issues = []
        for error in exc.errors():
            line, col = error_position(document, error)
            where = ".".join(str(p) for p in error_location(error))
            what = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            issues.append(Issue(Position(str(path), line, col), f"{where}: {what}"))
        return issues
    if not profile.name:
        return [Issue(Position(str(path), 1, 1), "metadata.name is required")]
    if profile.name != path.stem:
        line, col = locate(document, ["metadata", "name"])
        return [Issue(Position(str(path), line, col), f"metadata.name {profile.name!r} must match the file name {path.stem!r}")]
    return []


class PartnerKind(DefinitionKind):
    """`kind: Partner`: a trading partner profile in `partners/`."""

    kind = "Partner"
    model = PartnerProfile
    order = 3

    @classmethod
    def load(cls, path: Path, text: str) -> PartnerProfile:
        return load_partner(path)

    @classmethod
    def check(cls, path: Path, text: str) -> list[Issue]:
        return _check(path, text)
