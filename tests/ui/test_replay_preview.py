"""Issue 15 item 7: a UI replay first shows the difference of output against the
original, as `flowyard replay --dry-run` does, with a button that confirms; the preview
replays nothing and answers only a deployer with a CSRF token."""

from __future__ import annotations

import html
from pathlib import Path

from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.orm import Session

from flowyard.store.models import DeadLetter, StoredMessage

from . import seed
from .conftest import UiClient


def dead_letter_on_an_old_version(app: Litestar, flows: Path) -> tuple[str, int]:
    store = app.state.ui.store
    version = seed.deploy(store, flows / "erp-orders.yaml")
    message = seed.message(store, "erp-orders", version, {"po": "PO-77", "qty": 3}, state="dead",
                           error="target down", step="s")
    path = flows / "erp-orders.yaml"
    path.write_text(path.read_text().replace("{order: po, qty: qty}", "{order: po, qty: qty, fixed: `true`}"))
    seed.deploy(store, path)
    with Session(app.state.ui.engine) as db:
        dead = db.scalar(select(DeadLetter.id).where(DeadLetter.message_id == message))
    assert dead is not None
    return message, dead


def replays(app: Litestar) -> int:
    with Session(app.state.ui.engine) as db:
        return len(list(db.scalars(select(StoredMessage).where(StoredMessage.replay_of.is_not(None)))))


def test_replay_shows_the_output_diff_first_and_replays_on_confirm(
    app: Litestar, deployer: UiClient, flows: Path
) -> None:
    message, dead = dead_letter_on_an_old_version(app, flows)
    # the run page and the dead-letters page ask for the preview, not the replay
    run_page = deployer.get(f"/runs/{message}").text
    assert 'hx-post="/dead-letters/replay/preview"' in run_page and 'id="replay-preview"' in run_page
    letters = deployer.get("/dead-letters").text
    assert 'hx-post="/dead-letters/replay/preview"' in letters
    assert 'hx-post="/dead-letters/replay"' not in letters
    preview = deployer.post("/dead-letters/replay/preview", {"ids": str(dead), "version": "current"})
    assert preview.status_code == 200, preview.text
    text = html.unescape(preview.text)
    assert "Replay 1 dead letter(s) with the current version?" in text
    assert '<span class="dl del">-  "qty": 3\n</span>' in text or '-  "qty": 3' in text
    assert '+  "fixed": true' in text, text  # the line the new version adds
    assert 'hx-post="/dead-letters/replay"' in text and f'name="ids" value="{dead}"' in text
    assert replays(app) == 0  # a preview replays nothing
    with Session(app.state.ui.engine) as db:
        assert db.scalar(select(DeadLetter.status).where(DeadLetter.id == dead)) == "open"
    # the confirm button posts the same ids and version
    done = deployer.post("/dead-letters/replay", {"ids": str(dead), "version": "current"})
    assert "Replayed 1 dead letter(s)" in done.text
    assert 'id="replay-preview" hx-swap-oob="innerHTML"' in done.text  # the preview is cleared
    assert replays(app) == 1


def test_the_failed_version_and_a_group_preview(app: Litestar, deployer: UiClient, flows: Path) -> None:
    _, dead = dead_letter_on_an_old_version(app, flows)
    same = html.unescape(deployer.post("/dead-letters/replay/preview", {"ids": str(dead), "version": "failed"}).text)
    assert "No difference: it runs on the version it failed on." in same
    group = deployer.post("/dead-letters/replay/preview",
                          {"group_flow": "erp-orders", "group_reason": "target down", "version": "current"})
    assert f'name="ids" value="{dead}"' in group.text, group.text
    assert replays(app) == 0


def test_only_a_deployer_with_a_csrf_token_previews(app: Litestar, analyst: UiClient, deployer: UiClient,
                                                   flows: Path) -> None:
    _, dead = dead_letter_on_an_old_version(app, flows)
    assert analyst.post("/dead-letters/replay/preview", {"ids": str(dead)}).status_code == 403
    assert deployer.post("/dead-letters/replay/preview", {"ids": str(dead)}, csrf=False).status_code == 403
    nothing = deployer.post("/dead-letters/replay/preview", {"ids": ""})
    assert "Nothing selected to replay." in nothing.text


def test_a_removed_line_that_reads_like_a_file_header_stays_in_the_diff() -> None:
    """A replay's diff removes `--- failed: ...` (`---- failed` in the diff): inside a
    hunk it is content, on both the unified and the side-by-side view."""
    import difflib

    from flowyard_ui.diffview import lines, side_by_side

    diff = "".join(difflib.unified_diff(["--- failed: boom\n"], ["--- output 1\n", "{}\n"], "a@1", "b@2"))
    assert [(line.kind, line.text) for line in lines(diff)] == [
        ("head", "--- a@1"), ("head", "+++ b@2"), ("hunk", "@@ -1 +1,2 @@"),
        ("del", "---- failed: boom"), ("add", "+--- output 1"), ("add", "+{}")]
    rows = side_by_side(diff)
    assert [(r.kind, r.old, r.new) for r in rows] == [
        ("hunk", "@@ -1 +1,2 @@", "@@ -1 +1,2 @@"), ("change", "--- failed: boom", "--- output 1"),
        ("change", None, "{}")]
