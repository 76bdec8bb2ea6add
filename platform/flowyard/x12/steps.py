"""The `x12.parse` and `x12.generate` steps.

`x12.parse` reads an interchange (any delimiters, several interchanges per file),
checks the envelopes, validates every transaction set against its guide with pyx12 and
yields one message per set, one at a time, so a 100 MB file is processed with bounded
memory. A set that fails validation becomes a dead letter (segment position, element,
reason) while the good sets go on. With `acknowledge: "997"` or `"999"` it also emits the
functional acknowledgment, routed straight to the flow's targets with the same
correlation id. Inbound 997/999 sets reconcile outbound sets waiting for them.

`x12.generate` takes exactly the shape `x12.parse` gives (see flowyard.x12.shape) and
writes a transaction set in its envelopes, with control numbers from the persistent
per-partner counter, after validating the set against its guide.

A set no guide covers (another set or version) is refused as not supported unless the
partner profile says `unguided: accept`: then `x12.parse` reads it structurally and passes
it on with the `x12.unguided` header and a log line saying no guide validated it, and
`x12.generate` writes it from its `segments`. Envelope findings (IEA/ISA, GE/GS, SE/ST
control numbers and counts, GS01 against ST01) are logged by `x12.parse` whether or not
an acknowledgment carries them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import InputLocation, StepError
from ..message import Message
from ..options import Options
from ..services import ControlNumbers
from ..step import ROUTE_TO_TARGETS, FlowContext, OptionError, Rejected, Step, check_shared_name
from .acks import acknowledgment
from .document import UNREAD_NOTES, GroupResult, InterchangeInfo, InterchangeResult, SetResult, envelope_findings, walk
from .envelope import GroupOut, Party, isa_segment, now, st_se, write
from .functional_groups import group_of
from .guides import Guide, GuideError, default_guide, find_guide, guide_name_for
from .partners import PartnerError, PartnerProfile, SeparatorOptions, load_partner, party
from .reader import Separators, X12InputError
from .shape import UnwritableValue, body_segments, roles_of, segment_text

log = logging.getLogger("flowyard.x12")
X12_CONTENT_TYPE = "application/edi-x12"
REJECTED_INTERCHANGE = UNREAD_NOTES  # TA105 notes of an interchange its TA1 rejects (cut off, invalid)


def _search_dirs(context: FlowContext) -> list[Path]:
    return [d / "guides" for d in context.search_dirs() if (d / "guides").is_dir()]


def _partner(context: FlowContext, name: str | None) -> PartnerProfile | None:
    if not name:
        return None
    path = context.find_shared("partners", name, (".yaml",))
    if path is None:
        raise OptionError(f"no partner profile named {name!r}: expected partners/{name}.yaml beside the flow file or in a folder above it", "partner")
    try:
        return load_partner(path)
    except PartnerError as exc:
        raise OptionError(f"partner profile {path.name} is invalid: {exc}", "partner") from exc


def _guide(context: FlowContext, name: str | None, option: str = "guide") -> Guide | None:
    if not name:
        return None
    check_shared_name("guides", name, option)  # a guide's name, never a path out of guides/
    try:
        return find_guide(name, _search_dirs(context))
    except GuideError as exc:
        raise OptionError(str(exc.issues[0].message if exc.issues else exc), option) from exc


class X12ParseOptions(Options):
    guide: str | None = Field(None, description="guide name for every set (default: chosen by transaction set and version, e.g. 856-4010)")
    validate_: bool = Field(True, alias="validate", description="validate each set against its guide with pyx12 (false: structure only, faster)")
    acknowledge: Literal["997", "999", "partner"] | None = Field(None, description="emit a 997 or 999 functional acknowledgment, routed to the targets (`partner`: the profile's acknowledgments.send)")
    partner: str | None = Field(None, description="partner profile (flows/partners/NAME.yaml): TA1, duplicates, acknowledgment defaults")
    duplicates: Literal["reject", "warn", "allow"] | None = Field(None, description="an interchange already received (same sender and ISA13): reject, warn or allow (default: the partner profile's, else allow)")
    ta1: Literal["never", "errors", "always"] | None = Field(None, description="send a TA1 interchange acknowledgment (default: the partner profile's, else `errors` when a 997/999 is sent, else never)")


@dataclass
class X12Parse(Step):
    """Read X12 interchanges into one message per transaction set (validated by pyx12).

    Each message holds the set's segments and loops by name with elements by position
    (`BEG.BEG03`, `PO1_loop[].PO1.PO102`) plus `interchange` and `group`.
    """

    kind = "x12.parse"
    Options = X12ParseOptions
    main_option = "guide"
    takes = "bytes"
    gives = "data"
    fans_out = True

    def __init__(self, options: X12ParseOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.profile = _partner(context, options.partner)
        self.guide = _guide(context, options.guide)
        self.search = _search_dirs(context)
        self._guides: dict[tuple[str, str], Guide | None] = {}
        profile = self.profile
        self.duplicates = options.duplicates or (profile.duplicates.action if profile else "allow")
        if options.acknowledge == "partner":
            if profile is None:
                raise OptionError("acknowledge: partner needs `partner:` (the profile says which acknowledgment to send)", "acknowledge")
            send = profile.acknowledgments.send
            self.ack_kind: str | None = None if send == "none" else send
        else:
            self.ack_kind = options.acknowledge
        # an interchange envelope error (IEA02 against ISA13, IEA01) rides in the acknowledgment sent anyway
        self.ta1 = options.ta1 or (profile.acknowledgments.ta1 if profile else ("errors" if self.ack_kind else "never"))
        self.unguided = profile.unguided if profile else "refuse"

    def resolve(self, transaction: str, version: str) -> Guide | None:
        if self.guide is not None:
            return self.guide if self.guide.transaction == transaction else None
        key = (transaction, version)
        if key not in self._guides:
            try:
                self._guides[key] = default_guide(transaction, version, self.search)
            except GuideError as exc:
                raise StepError(f"guide {guide_name_for(transaction, version)} is invalid: {exc}") from exc
        return self._guides[key]

    def _numbers(self) -> ControlNumbers:
        return self.context.services.control_numbers()

    def _counter_key(self, interchange: InterchangeInfo) -> str:
        return self.profile.name if self.profile else interchange.sender

    def process(self, message: Message) -> Iterator[Message | Rejected]:
        return self._parts(message)

    def _parts(self, message: Message) -> Iterator[Message | Rejected]:
        payload = bytes(message.payload)
        skipping = False
        current: InterchangeInfo | None = None
        claimed: InterchangeInfo | None = None  # an interchange this message holds the claim of, until its end
        unguided_seen: set[tuple[str, str, str]] = set()
        try:
            summaries = self.ack_kind is not None  # per-set bookkeeping only when a 997/999 is due
            for event in walk(payload, self.resolve, validate=self.options.validate_, shape=True, summaries=summaries,
                              unguided=self.unguided):
                if isinstance(event, SetResult):
                    if current is not event.interchange:
                        current = event.interchange
                        skipping = self._is_duplicate(message, current)
                        claimed = None if skipping else current
                    if skipping:
                        continue
                    if event.unguided or (event.guide is None and "1" in event.codes):
                        key = (event.interchange.control_number, event.transaction, event.group.version)
                        if key not in unguided_seen:  # once per interchange and kind of set, not per set
                            unguided_seen.add(key)
                            log.warning("interchange %s: transaction set %s version %s has no guide: %s", key[0], key[1], key[2] or "?",
                                        "read structurally, its envelopes checked, its content not validated" if event.unguided
                                        else "refused as not supported (a partner profile with `unguided: accept` reads it structurally)")
                    yield self._set_message(message, event)
                elif isinstance(event, InterchangeResult):
                    if current is not event.interchange:
                        current = event.interchange
                        skipping = self._is_duplicate(message, current)
                    if skipping:
                        yield from self._duplicate_outputs(message, event)
                    else:
                        for finding in envelope_findings(event):
                            log.warning("%s", finding)
                        if REJECTED_INTERCHANGE.intersection(event.notes):
                            self._release(message, current)  # its TA1 says rejected: not received
                        yield from self._acknowledge(message, event)
                    current, skipping, claimed = None, False, None
                elif isinstance(event, GroupResult) and not skipping:
                    unanswered = "; no 997/999 answers a group of acknowledgments" if event.group.functional_id == "FA" else ""
                    for finding in envelope_findings(event):
                        log.warning("%s%s", finding, unanswered)
        except X12InputError as exc:
            self._release(message, claimed)
            raise StepError(str(exc.message), where=exc.where) from None
        except StepError:
            self._release(message, claimed)
            raise
        except Exception as exc:  # the store or pyx12 failing: the engine keeps the message
            self._release(message, claimed)
            log.exception("x12.parse failed unexpectedly")
            raise StepError(f"x12.parse could not finish: {type(exc).__name__}: {exc}") from None

    def _release(self, message: Message, interchange: InterchangeInfo | None) -> None:
        """An interchange not read to its end was not accepted: its claim goes, so the
        partner's complete resend (and a replay of it) is processed, not refused."""
        if interchange is None or self.duplicates == "allow":
            return
        try:
            self._numbers().release_interchange(self._counter_key(interchange), interchange.sender,
                                                interchange.control_number, message.correlation_id)
        except Exception as exc:  # the store is down: the failure itself still stands
            log.warning("could not release interchange %s: %s", interchange.control_number, exc)

    # -- duplicates -----------------------------------------------------------------
    def _is_duplicate(self, message: Message, interchange: InterchangeInfo) -> bool:
        if self.duplicates == "allow":
            return False
        window = self.profile.duplicates.window if self.profile else timedelta(days=30)
        check = self._numbers().claim_interchange(self._counter_key(interchange), interchange.sender,
                                                  interchange.control_number, window, message.correlation_id)
        if check.duplicate and self.duplicates == "warn":
            log.warning("interchange %s from %s was already received at %s; processing it again",
                        interchange.control_number, interchange.sender, check.first_seen)
            message.headers["x12.duplicate"] = True
            return False
        return check.duplicate

    def _duplicate_outputs(self, message: Message, result: InterchangeResult) -> Iterator[Message | Rejected]:
        interchange = result.interchange
        error = StepError(
            f"duplicate interchange: ISA13 {interchange.control_number} from {interchange.sender} was already received; not processed again",
            where=InputLocation(line=interchange.isa.line, segment="ISA", path="ISA13"),
        )
        yield Rejected(message.child(message.payload, message.content_type), error)
        if self.ta1 != "never":
            numbers = self._numbers()
            text = acknowledgment(result, None, ta1=True, counter=lambda k: numbers.next_number(self._counter_key(interchange), k),
                                  ta1_notes=["025"])
            if text:
                yield message.child(text.encode(), X12_CONTENT_TYPE, **{ROUTE_TO_TARGETS: True, "x12.ack": "TA1"})

    # -- one set ----------------------------------------------------------------------
    def _set_message(self, message: Message, result: SetResult) -> Message | Rejected:
        data = result.data or {}
        data["interchange"] = result.interchange.as_data()
        data["group"] = result.group.as_data()
        headers: dict[str, Any] = {"x12.transaction": result.transaction, "x12.control_number": result.control_number,
                   "x12.interchange": result.interchange.control_number, "x12.sender": result.interchange.sender,
                   "x12.guide": result.guide.name if result.guide else None}
        if result.unguided:  # said plainly: no guide validated this content
            headers["x12.unguided"] = result.unguided_note
        if result.accepted:
            if result.transaction in ("997", "999"):
                self._reconcile(result)
            if result.problems:  # accepted with errors noted (AK5/IK5 "E"): the data goes on, the notes with it
                headers["x12.noted"] = [p.describe() for p in result.problems[:20]]
            return message.child(data, "application/json", **headers)
        seps = result.segments[0].separators
        raw = "".join(s.text() + seps.segment + "\n" for s in result.segments)
        first = next((p for p in result.problems if p.fatal and not p.envelope), None) or (result.problems[0] if result.problems else None)
        reasons = result.reasons()
        if first is not None:
            where = InputLocation(line=first.line, segment=f"{first.segment} #{first.position}", path=first.path if first.element else None)
            head = f"transaction set {result.transaction} {result.control_number} is invalid: {first.message}"
        else:
            where = InputLocation(line=result.line, segment=f"ST #{1}")
            head = reasons[0] if reasons else f"transaction set {result.transaction} {result.control_number} is invalid"
        error = StepError(head, where=where, details=reasons[:50])
        return Rejected(message.child(raw.encode(), X12_CONTENT_TYPE, **headers), error)

    def _reconcile(self, result: SetResult) -> None:
        """An inbound 997/999: mark the outbound sets it answers."""
        data = result.data or {}
        ak1 = data.get("AK1")
        group = ak1.get("AK102") if isinstance(ak1, dict) else None
        loops = data.get("AK2_loop") or []
        if not group or not loops:
            return
        try:
            for loop in loops:
                ak2 = loop.get("AK2", {})
                status = (loop.get("AK5") or loop.get("IK5") or {})
                code = status.get("AK501") or status.get("IK501")
                if ak2.get("AK202") and code:
                    self._numbers().reconcile(result.interchange.sender, str(group), str(ak2["AK202"]), str(code))
        except Exception as exc:  # the store is down: the ack itself still goes on
            log.warning("could not reconcile acknowledgment %s: %s", result.control_number, exc)

    # -- acknowledgments ----------------------------------------------------------------
    def _acknowledge(self, message: Message, result: InterchangeResult) -> Iterator[Message]:
        ta1 = self.ta1 == "always" or (self.ta1 == "errors" and bool(result.notes))
        if not self.ack_kind and not ta1:
            return
        key = self._counter_key(result.interchange)
        numbers = self._numbers()
        text = acknowledgment(result, self.ack_kind, ta1=ta1, counter=lambda k: numbers.next_number(key, k))
        if text:
            yield message.child(text.encode(), X12_CONTENT_TYPE, **{ROUTE_TO_TARGETS: True, "x12.ack": self.ack_kind or "TA1"})


# ---------------------------------------------------------------------------------------


class GenerateSeparators(SeparatorOptions):
    pass


class X12GenerateOptions(Options):
    transaction: str | None = Field(None, pattern=r"^\d{3}$", description="ST01, e.g. \"856\" (default: the data's ST.ST01)")
    version: str | None = Field(None, pattern=r"^\d{6}", description="GS08, e.g. \"004010\" (default: the partner's, else 004010)")
    sender: str | None = Field(None, description="ISA05:ISA06 as QUALIFIER:ID, e.g. ZZ:ACMEBUYER (default: the partner profile's `us`)")
    receiver: str | None = Field(None, description="ISA07:ISA08 as QUALIFIER:ID (default: the partner profile's `them`)")
    partner: str | None = Field(None, description="partner profile (flows/partners/NAME.yaml): ids, separators, version, usage, acknowledgment deadline")
    separators: GenerateSeparators | None = Field(None, description="delimiters (default: the partner's, else * > ~ ^)")
    usage: Literal["T", "P"] | None = Field(None, description="ISA15: T test, P production (default: the partner's, else P)")
    guide: str | None = Field(None, description="guide to write and validate with (default: by transaction set and version)")
    validate_: bool = Field(True, alias="validate", description="validate the set against its guide before it leaves")
    newline: bool | None = Field(None, description="line break after each segment terminator (default: the partner's, else true)")

    @field_validator("sender", "receiver")
    @classmethod
    def _party(cls, value: str | None) -> str | None:
        return party(value) if value is not None else None


class X12Generate(Step):
    """Write a transaction set, in the shape x12.parse gives, with its ISA/GS/ST envelopes.

    Control numbers come from a persistent counter per partner; the set is validated
    against its guide before it leaves; a value holding a delimiter is refused.
    """

    kind = "x12.generate"
    Options = X12GenerateOptions
    main_option = "partner"
    takes = "data"
    gives = "bytes"

    def __init__(self, options: X12GenerateOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        profile = self.profile = _partner(context, options.partner)
        sender = options.sender or (profile.interchange.us if profile else None)
        receiver = options.receiver or (profile.interchange.them if profile else None)
        if not sender or not receiver:
            raise OptionError("x12.generate needs `sender` and `receiver` (QUALIFIER:ID) or a `partner` profile that gives them", "partner")
        self.sender, self.receiver = Party.parse(sender), Party.parse(receiver)
        self.gs_sender = (profile.group.us if profile and profile.group.us else None) or self.sender.id
        self.gs_receiver = (profile.group.them if profile and profile.group.them else None) or self.receiver.id
        self.version = options.version or (profile.group.version if profile else "004010")
        self.isa_version = profile.interchange.version if profile else ("00501" if self.version.startswith("005") else "00401")
        sep = options.separators or (profile.interchange.separators if profile else SeparatorOptions())
        repetition = sep.repetition if self.isa_version >= "00402" else None
        self.seps = Separators(sep.element, sep.component, sep.segment, repetition)
        if len(self.seps.all()) < (4 if repetition else 3):
            raise OptionError("the separators must be four different characters", "separators")
        self.roles = roles_of(self.seps)
        self.usage = options.usage or (profile.interchange.usage if profile else "P")
        self.newline = options.newline if options.newline is not None else (profile.interchange.newline if profile else True)
        self.guide = _guide(context, options.guide)
        self.search = _search_dirs(context)
        self.partner_key = profile.name if profile else str(self.receiver)
        self.expect_ack = profile is not None and profile.acknowledgments.expect != "none"
        self.unguided = profile.unguided if profile else "refuse"

    def process(self, message: Message) -> Message:
        data = message.payload
        if not isinstance(data, dict):
            raise StepError("x12.generate takes one transaction set as an object (the shape x12.parse gives)")
        st_value = data.get("ST")
        st: dict[str, Any] = st_value if isinstance(st_value, dict) else {}
        transaction = self.options.transaction or str(st.get("ST01") or "")
        if not transaction:
            raise StepError("no transaction set id: set `transaction:` on the step or give ST.ST01 in the data", where=InputLocation(path="ST.ST01"))
        guide = self.guide or default_guide(transaction, self.version, self.search)
        unguided_note: str | None = None
        if guide is None:
            if not isinstance(data.get("segments"), list):
                raise StepError(f"no guide for transaction set {transaction} version {self.version}, and the data has no `segments` "
                                f"list to write in file order; name a guide with `guide:`", where=InputLocation(path="segments"))
            if self.options.validate_ and self.unguided != "accept":
                raise StepError(f"no guide for transaction set {transaction} version {self.version} to validate it with; name one "
                                f"with `guide:`, or write it structurally from `segments` with the partner profile's "
                                f"`unguided: accept` (or `validate: false`)")
            unguided_note = f"transaction set {transaction} version {self.version} has no guide: written from `segments`, its content not validated"
        try:
            body = [segment_text(seg_id, obj, self.seps, self.roles) for seg_id, obj in body_segments(data, guide)]
        except UnwritableValue as exc:
            raise StepError(str(exc), where=InputLocation(path=exc.key)) from None
        except ValueError as exc:
            raise StepError(str(exc)) from None
        if not body:
            raise StepError(f"the data has no segments of transaction set {transaction} (keys like BEG, PO1_loop; see docs/x12.md)")
        convention = str(st.get("ST03")) if st.get("ST03") else None
        if self.options.validate_ and guide is not None:
            self._validate(transaction, body, convention, guide)
        group_data = data.get("group")
        read_gs01 = str(group_data.get("GS01") or "") if isinstance(group_data, dict) else ""  # the group it was read in
        functional_id = (guide.functional_group if guide and guide.functional_group else group_of(transaction) or read_gs01)
        if not functional_id:
            raise StepError(f"no functional group (GS01) is known for transaction set {transaction}: name a guide with "
                            f"`functional_group:` for it, or give group.GS01 in the data", where=InputLocation(path="group.GS01"))
        numbers = self.context.services.control_numbers()
        isa_control = numbers.next_number(self.partner_key, "ISA")
        gs_control = numbers.next_number(self.partner_key, "GS")
        st_control = f"{numbers.next_number(self.partner_key, 'ST'):04d}"
        when = now()
        group = GroupOut(functional_id, self.gs_sender, self.gs_receiver, gs_control, self.version,
                         [st_se(transaction, st_control, body, self.seps, convention)])
        isa = isa_segment(self.sender, self.receiver, isa_control, self.isa_version, self.usage, self.seps, when)
        text = write(isa, [group], self.seps, self.newline, when, isa_control)
        if self.expect_ack and self.profile is not None:
            numbers.record_outbound(partner=self.partner_key, receiver=str(self.receiver), interchange_control=f"{isa_control:09d}",
                                    group_control=str(gs_control), set_control=st_control, transaction=transaction,
                                    deadline=self.profile.acknowledgments.deadline, correlation_id=message.correlation_id)
        message.payload = text.encode()
        message.content_type = X12_CONTENT_TYPE
        message.headers.update({"x12.transaction": transaction, "x12.control_number": st_control,
                                "x12.interchange": f"{isa_control:09d}", "x12.receiver": str(self.receiver)})
        if unguided_note:
            message.headers["x12.unguided"] = unguided_note
            log.warning("%s", unguided_note)
        return message

    def _validate(self, transaction: str, body: list[str], convention: str | None, guide: Guide) -> None:
        """Validate the set before control numbers are spent (placeholders 1 / 0001)."""
        from .document import walk as walk_events

        when = now()
        group = GroupOut(guide.functional_group or group_of(transaction) or "XX", self.gs_sender, self.gs_receiver, 1, self.version,
                         [st_se(transaction, "0001", body, self.seps, convention)])
        isa = isa_segment(self.sender, self.receiver, 1, self.isa_version, self.usage, self.seps, when)
        text = write(isa, [group], self.seps, True, when, 1)
        for event in walk_events(text, lambda t, v: guide, validate=True, shape=False):
            if isinstance(event, SetResult) and (not event.accepted or event.problems):  # nothing noted leaves here
                first = event.problems[0] if event.problems else None
                where = InputLocation(segment=f"{first.segment} #{first.position}", path=first.path if first.element else None) if first else None
                raise StepError(f"the generated {transaction} does not validate against guide {guide.name}: "
                                + (first.message if first else ", ".join(event.reasons())), where=where, details=event.reasons()[:50])

    def output_content_type(self) -> str:
        return X12_CONTENT_TYPE
