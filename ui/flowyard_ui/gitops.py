"""Git for the flows folder: which version is committed, and committing a save to a
review branch with the author's name.

The commit is made with plumbing (a temporary index, `commit-tree`, `update-ref`), so
the working tree and the checked-out branch are never switched: the runtime keeps
running the files on disk while the change waits for review on its branch.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from flowyard.loader import content_hash


class GitError(Exception):
    """A git command failed; the message is git's own, shortened."""


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=30,
    )
    if result.returncode != 0:
        raise GitError(
            (result.stderr or result.stdout).strip().splitlines()[-1]
            if (result.stderr or result.stdout).strip()
            else f"git {args[0]} failed"
        )
    return result.stdout


def _root(directory: str) -> str | None:
    try:
        return _git(Path(directory), "rev-parse", "--show-toplevel").strip()
    except (GitError, FileNotFoundError, subprocess.TimeoutExpired, NotADirectoryError):
        return None


def repo_root(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    found = _root(str(directory.resolve()))
    return Path(found) if found else None


def committed_text(repo: Path, path: Path, ref: str = "HEAD") -> str | None:
    rel = path.resolve().relative_to(repo).as_posix()
    try:
        return _git(repo, "show", f"{ref}:{rel}")
    except GitError:
        return None


def committed_version(repo: Path, path: Path, ref: str = "HEAD") -> str | None:
    text = committed_text(repo, path, ref)
    return content_hash(text) if text is not None else None


def current_branch(repo: Path) -> str:
    try:
        return _git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    except GitError:
        return "?"


def branch_name(prefix: str, username: str, flow: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", username).strip("-.") or "user"
    return f"{prefix}/{clean}/{flow}"


def commit_to_branch(repo: Path, path: Path, text: str, *, branch: str, message: str, author: str, email: str) -> str:
    """Commit `text` as the file at `path` on `branch` (created from HEAD when new);
    returns the commit id. The working tree and the current branch are left alone."""
    rel = path.resolve().relative_to(repo).as_posix()
    ref = f"refs/heads/{branch}"
    try:
        parent = _git(repo, "rev-parse", "--verify", "-q", ref).strip()
        expected_old = parent
    except GitError:
        parent = _git(repo, "rev-parse", "HEAD").strip()
        expected_old = ""  # the branch must not exist yet
    blob = _git(repo, "hash-object", "-w", "--stdin", input=text).strip()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", parent, env=env)
        _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=env)
        tree = _git(repo, "write-tree", env=env).strip()
    people = {
        "GIT_AUTHOR_NAME": author,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": author,
        "GIT_COMMITTER_EMAIL": email,
    }
    commit = _git(repo, "commit-tree", tree, "-p", parent, "-m", message, env=people).strip()
    _git(repo, "update-ref", ref, commit, expected_old)
    return commit


def branch_commits(repo: Path, branch: str, limit: int = 10) -> list[tuple[str, str, str]]:
    """(short id, author, subject) of the newest commits on a branch."""
    try:
        out = _git(repo, "log", f"-{limit}", "--format=%h%x1f%an%x1f%s", f"refs/heads/{branch}", "--")
    except GitError:
        return []
    return [tuple(line.split("\x1f", 2)) for line in out.splitlines() if line]  # type: ignore[misc]


def review_branches(repo: Path, prefix: str, flow: str = "*") -> list[dict[str, str]]:
    """The review branches (`PREFIX/USER/FLOW`) with their newest commit: branch, full
    and short id, author, subject, flow."""
    try:
        out = _git(
            repo,
            "for-each-ref",
            "--sort=-committerdate",
            "--format=%(refname:short)%1f%(objectname)%1f%(objectname:short=10)%1f%(authorname)%1f%(subject)",
            f"refs/heads/{prefix}/*/{flow}",
        )
    except GitError:
        return []
    found = []
    for line in out.splitlines():
        parts = line.split("\x1f")
        if len(parts) == 5:
            branch, commit, short, author, subject = parts
            found.append({"branch": branch, "commit": commit, "short": short, "author": author,
                          "subject": subject, "flow": branch.rsplit("/", 1)[-1]})
    return found
