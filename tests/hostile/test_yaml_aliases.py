"""Hostile YAML (issue 17): a few hundred bytes of aliases that stand for billions of
values, or an alias that holds itself, are refused at the alias, quickly, by every
reader: the round trip, the UI's fast parse and the command line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowyard.yamlio import YamlSyntaxError, load_text

FLOWYARD = str(Path(sys.executable).parent / "flowyard")


def bomb(levels: int = 9) -> str:
    """The classic alias bomb: each level is ten aliases of the one before (10**levels values)."""
    lines = ["apiVersion: flowyard/v1", "kind: Flow", "metadata: {name: bomb}",
             'l0: &l0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, levels)]
    lines += ["source: {file: {path: in}}", "steps: [json.parse: {}]", "targets: [file: {path: out}]"]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_where_it_crosses_the_bound() -> None:
    started = time.monotonic()
    with pytest.raises(YamlSyntaxError) as refused:
        load_text(bomb(), "bomb.yaml")
    assert time.monotonic() - started < 5
    issue = refused.value.issue
    assert "expand to more than 200,000 values" in issue.message
    assert issue.position.line == 9  # l5: 10**6 values, the first level over the bound


def test_an_alias_that_holds_itself_is_refused() -> None:
    with pytest.raises(YamlSyntaxError, match="refers to the node that holds it"):
        load_text("a: &a [1, *a]\n", "self.yaml")


def test_aliases_within_the_bound_still_load() -> None:
    document = load_text(bomb(levels=4), "small.yaml")  # 10,000 values
    assert len(document["l3"]) == 10 and document["l3"][0][0][0][0] == "x"


def test_validate_refuses_the_bomb_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(12))  # a trillion values, 700 bytes
    started = time.monotonic()
    result = subprocess.run([FLOWYARD, "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{path}:9:" in result.stdout and "alias bomb" in result.stdout
    assert time.monotonic() - started < 30  # was unbounded
