"""The memoised validation (flowyard.x12.memo) finds exactly what pyx12's plain walk finds.

For every corpus set that has a guide, and for mutated copies of the valid ones (a
mandatory segment dropped, segments repeated past their maximum, a bad element value,
an unknown segment, emptied elements, every digit a 9, a loop over its maximum), the problems of the
fast path equal those of pyx12's own walker and validators run segment by segment. The
fast path runs each set twice: once as it comes and once after everything else, so
both the first sight (recording) and the replay of every transition and verdict are
compared.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from flowyard.x12.document import SetResult, walk
from flowyard.x12.guides import Guide, default_guide, load_guide
from flowyard.x12.reader import Segment, X12InputError
from flowyard.x12.validate import validate_set

from .conftest import interchange
from .test_corpus import FILES, resolve

SetCase = tuple[str, Guide, list[Segment]]


def corpus_sets(corpus: Path) -> list[SetCase]:
    cases: list[SetCase] = []
    for relative in FILES:
        path = corpus / relative
        try:
            found = list(walk(path.read_bytes(), resolve, validate=False, shape=False, summaries=False))
        except X12InputError:
            continue
        for event in found:
            if isinstance(event, SetResult) and event.guide is not None and event.segments[-1].id == "SE":
                cases.append((f"{path.name}:{event.control_number}", event.guide, event.segments))
    return cases


def as_tuples(problems: list[Any]) -> list[tuple[Any, ...]]:
    return [dataclasses.astuple(p) for p in problems]


def mutations(segments: list[Segment]) -> list[tuple[str, list[Segment]]]:
    """Broken copies of a valid set (ST..SE kept at both ends)."""
    st, body, se = segments[0], segments[1:-1], segments[-1]
    seps = st.separators
    out: list[tuple[str, list[Segment]]] = []
    if body:
        out.append(("first body segment dropped", [st, *body[1:], se]))
        out.append(("every body segment twice", [st, *[s for seg in body for s in (seg, seg)], se]))
        out.append(("every body segment three times in a row", [st, *body, *body, *body, se]))
        third = body[min(2, len(body) - 1)]
        bad = Segment(third.id, ["ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", *third.elements[1:]], third.line, seps)
        out.append(("a bad first element", [st, *[bad if s is third else s for s in body], se]))
        unknown = Segment("ZZZ", ["1"], third.line, seps)
        out.append(("an unknown segment", [st, *body[:3], unknown, *body[3:], se]))
        last = body[-1]
        out.append(("last body segment emptied", [st, *body[:-1], Segment(last.id, [""] * len(last.elements), last.line, seps), se]))
        nines = str.maketrans("0123456789", "9999999999")
        out.append(("every digit a 9 (dates and times invalid, numbers still numbers)",
                    [st, *[Segment(s.id, [e.translate(nines) for e in s.elements], s.line, seps) for s in body], se]))
        out.append(("a component separator in every element", [st, *[Segment(s.id, [e + seps.component + "X" if e else e for e in s.elements], s.line, seps) for s in body], se]))
    return out


def compare(cases: list[SetCase]) -> int:
    """Fast path (twice, the second time warm) against the plain walk; returns the number of sets with problems."""
    plain = [as_tuples(validate_set(guide, segments, fast=False)) for _, guide, segments in cases]
    first = [as_tuples(validate_set(guide, segments)) for _, guide, segments in cases]
    again = [as_tuples(validate_set(guide, segments)) for _, guide, segments in reversed(cases)][::-1]
    for (name, _, _), expected, cold, warm in zip(cases, plain, first, again, strict=True):
        assert cold == expected, name
        assert warm == expected, name
    return sum(1 for problems in plain if problems)


def test_every_corpus_set_gets_the_same_problems(corpus: Path) -> None:
    cases = corpus_sets(corpus)
    assert len(cases) >= 40
    with_problems = compare(cases)
    assert with_problems >= 5  # the invalid samples are among them


def test_mutated_corpus_sets_get_the_same_problems(corpus: Path) -> None:
    valid = [case for case in corpus_sets(corpus) if not validate_set(case[1], case[2], fast=False)]
    assert len(valid) >= 20
    cases: list[SetCase] = []
    for name, guide, segments in valid:
        cases.append((name, guide, segments))  # the valid set first: its moves get memoised, then replayed broken
        cases.extend((f"{name} ({what})", guide, broken) for what, broken in mutations(segments))
    with_problems = compare(cases)
    assert with_problems >= len(valid) * 4


def lines(count: int) -> list[str]:
    body = ["BEG*00*SA*PO-1**20261118", "N1*ST*ACME*92*MX01"]
    for i in range(1, count + 1):
        body += [f"PO1*{i}*5*EA*1.25*PE*BP*A-{i}", f"PID*F****PART {i}"]
    return [*body, f"CTT*{count}"]


def sets_of(text: str, guide: Guide) -> list[list[Segment]]:
    return [e.segments for e in walk(text, lambda t, v: guide, validate=False, shape=False) if isinstance(e, SetResult)]


def test_a_loop_over_its_maximum_after_many_good_repeats(tmp_path: Path) -> None:
    """Counts cross a limit only after the moves were memoised: the replay must notice."""
    (tmp_path / "850-tight.yaml").write_text(
        "apiVersion: flowyard/v1\nkind: Guide\nmetadata: {name: 850-tight}\nextends: 850-4010\n"
        "changes:\n  PO1_loop: {max: 3}\n  N1_loop: {max: 1}\n", encoding="utf-8")
    guide = load_guide(tmp_path / "850-tight.yaml")
    good, over = sets_of(interchange([("0001", "850", lines(3)), ("0002", "850", lines(6))]), guide)
    assert validate_set(guide, good) == []
    problems = validate_set(guide, over)
    assert as_tuples(problems) == as_tuples(validate_set(guide, over, fast=False))
    assert [(p.segment, p.code, p.position) for p in problems] == [("PO1", "4", 10), ("PO1", "4", 12), ("PO1", "4", 14)]
    assert validate_set(guide, good) == []  # and the next good set is good again


def test_a_repeated_set_is_replayed_not_walked_again() -> None:
    """Memoised moves and verdicts live with the compiled guide and outlast a set."""
    guide = default_guide("850", "004010")
    assert guide is not None
    first, longer, same = sets_of(interchange([("0001", "850", lines(20)), ("0002", "850", lines(60)), ("0003", "850", lines(20))]), guide)
    assert validate_set(guide, first) == []
    memo = guide._memo  # type: ignore[attr-defined]
    moves = memo.moves()
    assert moves > 0
    assert validate_set(guide, longer) == []
    assert memo.moves() == moves  # lines 21-60 make the same moves as lines 2-20
    verdicts = sum(len(t.whole) for v in memo.nodes.values() for t in v.per.values())
    assert validate_set(guide, same) == []
    # segments seen before are one look-up each: only ST and SE (a new control number) are new
    assert sum(len(t.whole) for v in memo.nodes.values() for t in v.per.values()) == verdicts + 2


def test_interchanges_with_different_component_separators_keep_their_own_verdicts() -> None:
    """N102 'ACME:MX' is a name under component separator '>' and a composite (an error)
    under ':'; sets of both kinds, interleaved, get what the plain walk gives."""
    guide = default_guide("850", "004010")
    assert guide is not None
    body = ["BEG*00*SA*PO-1**20261118", "N1*ST*ACME:MX*92*MX01", "PO1*1*5*EA*1.25*PE*BP*A-1", "CTT*1"]
    angle = sets_of(interchange([("0001", "850", body)]), guide)[0]
    colon = sets_of(interchange([("0001", "850", body)], seps=("*", ":", "~", "U")), guide)[0]
    results = [(name, validate_set(guide, s), validate_set(guide, s, fast=False))
               for name, s in [("angle", angle), ("colon", colon), ("angle", angle), ("colon", colon)]]
    for name, fast, plain in results:
        assert as_tuples(fast) == as_tuples(plain), name
    assert results[0][1] == [] and results[1][1] != []
