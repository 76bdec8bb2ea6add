"""The git review set-up of docs/flows-repo/, as a flows repository uses it.

A throwaway git repository of flows (a file flow, connector flows over MQTT and SFTP, code
tables, a partner profile, a guide, a template and its instance, test inputs and expected
outputs inside and outside flows/) gets docs/flows-repo/pre-commit-config.yaml as its
`.pre-commit-config.yaml`, with `repo:` pointed at a clone of this repository and `rev:`
at a commit holding the working tree's tracked files: pre-commit builds the hook
environment from it (pip installs Flowyard and its dependencies), once per session.

The hooks must pass `pre-commit run --all-files` and the first commit, and refuse (naming
the file) a broken flow, a flow whose own tests fail and a template change that breaks an
instance's test. The shell steps of docs/flows-repo/github-workflow.yml, read from the
YAML so that the docs cannot drift from what is tested, must pass a push and a harmless
pull request and refuse the same three changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCS = ROOT / "docs" / "flows-repo"
PRE_COMMIT = str(BIN / "pre-commit")
TIMEOUT = 900  # the first hook environment build downloads Flowyard's dependencies


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    result.stdout += result.stderr  # one text to search (pre-commit and git print hooks to either)
    return result


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env=env or clean_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without what would leak the test session into the
    repositories (git's variables when run from a hook, Flowyard's settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLOWYARD_", "PRE_COMMIT", "VIRTUAL_ENV"))}
    env.pop("SKIP", None)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "/usr/bin:/bin")])
    env["PRE_COMMIT_COLOR"] = "never"
    env.update(extra)
    return env


def load_yaml(path: Path) -> object:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


# -- the Flowyard repository pre-commit installs, and the hook environment -----------------


@pytest.fixture(scope="session")
def flowyard_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A clone of this repository whose HEAD holds the working tree's files as they are
    now (tracked ones, committed or not, and new ones git does not ignore): the hooks run
    exactly the code the rest of the test session imports."""
    clone = tmp_path_factory.mktemp("flowyard-src") / "flowyard"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], env=clean_env(), check=True, capture_output=True)
    tracked = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for rel in filter(None, tracked):
        source, target = ROOT / rel, clone / rel
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists() and not source.exists():
            target.unlink()
    git(clone, "add", "-A")
    git(clone, "-c", "user.name=flowyard tests", "-c", "user.email=tests@flowyard.invalid", "commit", "-q", "--allow-empty", "--no-verify", "-m", "the working tree under test")
    return clone, git(clone, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="session")
def hook_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One PRE_COMMIT_HOME for the session: the hook environment is built once."""
    return clean_env(PRE_COMMIT_HOME=str(tmp_path_factory.mktemp("pre-commit-home")))


HOOKS = {hook["id"]: hook for hook in load_yaml(ROOT / ".pre-commit-hooks.yaml")}  # type: ignore[union-attr]


def precommit_config(repo_url: str, rev: str) -> str:
    """docs/flows-repo/pre-commit-config.yaml with its `repo:` and `rev:` replaced."""
    text = (DOCS / "pre-commit-config.yaml").read_text(encoding="utf-8")
    text, repos = re.subn(r"^(\s*- repo:\s*)\S+", lambda m: m.group(1) + repo_url, text, flags=re.M)
    text, revs = re.subn(r"^(\s*rev:\s*)\S+", lambda m: m.group(1) + rev, text, flags=re.M)
    assert repos == revs == 1, "the documented config should name Flowyard's repository once"
    return text


# -- a new flows repository ----------------------------------------------------------------

MQTT_TESTS = """tests:
  - name: one line counter
    input: tests/line-counts-mqtt-to-sql/l1.json
    source: {topic: plant/mx01/L1/count}
    expect: tests/line-counts-mqtt-to-sql/l1-row.json
"""


def write_flows(source: Path, repo: Path) -> None:
    """Flows as a plant's integration team keeps them, taken from `source` (the clone)."""
    flows = repo / "flows"
    flows.mkdir(parents=True)
    for rel in ("flows/mx01-production-confirmations.yaml", "flows/mx02-production-confirmations.yaml",
                "examples/connectors/supplierx-856-to-wms.yaml", "examples/connectors/known_hosts"):
        shutil.copy2(source / rel, flows)
    for rel in ("tables", "partners", "guides", "templates/plant-production-confirmations", "tests/mx02-production-confirmations"):
        shutil.copytree(source / "flows" / rel, flows / rel)
    shutil.copy2(source / "flows/templates/plant-production-confirmations.yaml", flows / "templates")
    shutil.copytree(source / "examples/plant", repo / "examples/plant")  # test inputs outside flows/
    (repo / "examples/expected").mkdir()
    for expected in (source / "examples/expected").glob("confirmation-*.json"):
        shutil.copy2(expected, repo / "examples/expected")
    mqtt = (source / "examples/connectors/line-counts-mqtt-to-sql.yaml").read_text(encoding="utf-8")
    (flows / "line-counts-mqtt-to-sql.yaml").write_text(mqtt + MQTT_TESTS, encoding="utf-8")
    data = flows / "tests" / "line-counts-mqtt-to-sql"
    data.mkdir()
    (data / "l1.json").write_text('{"line": "L1", "good": 118, "scrap": 2, "at": "2026-11-22T10:15:00Z", "plc": "gw-3"}\n', encoding="utf-8")
    (data / "l1-row.json").write_text('{"line": "L1", "good": 118, "scrap": 2, "counted_at": "2026-11-22T10:15:00Z"}\n', encoding="utf-8")
    (repo / "README.md").write_text("# MX01 integration flows\n", encoding="utf-8")


@pytest.fixture(scope="session")
def new_repo(tmp_path_factory: pytest.TempPathFactory, flowyard_repo: tuple[Path, str], hook_env: dict[str, str]) -> Path:
    """A new flows repository with the documented hooks installed; nothing committed."""
    clone, rev = flowyard_repo
    repo = tmp_path_factory.mktemp("new") / "flows-repo"
    write_flows(clone, repo)
    (repo / ".pre-commit-config.yaml").write_text(precommit_config(str(clone), rev), encoding="utf-8")
    workflow = repo / ".github" / "workflows" / "flows.yml"
    workflow.parent.mkdir(parents=True)
    shutil.copy2(DOCS / "github-workflow.yml", workflow)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Integration Analyst")
    git(repo, "config", "user.email", "analyst@plant.example")
    git(repo, "config", "commit.gpgsign", "false")
    installed = run([PRE_COMMIT, "install"], repo, hook_env)
    assert installed.returncode == 0, installed.stdout
    return repo


@pytest.fixture(scope="session")
def committed_repo(tmp_path_factory: pytest.TempPathFactory, new_repo: Path, hook_env: dict[str, str]) -> Path:
    """The new repository after its first commit (made without the hooks: the test of the
    first commit is test_a_new_repository_passes_and_makes_its_first_commit), with the
    hook environment built."""
    repo = tmp_path_factory.mktemp("committed") / "flows-repo"
    shutil.copytree(new_repo, repo, symlinks=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "MX01 flows")
    built = run([PRE_COMMIT, "install-hooks"], repo, hook_env)
    assert built.returncode == 0, built.stdout
    return repo


@pytest.fixture
def repo(tmp_path: Path, committed_repo: Path) -> Path:
    """A private copy of the committed repository, to change."""
    target = tmp_path / "flows-repo"
    shutil.copytree(committed_repo, target, symlinks=True)
    return target


# -- what pre-commit printed ----------------------------------------------------------------

_STATUS = re.compile(r"^(?P<name>\S.*?)\.{3,}(?:\(no files to check\))?(?P<status>Passed|Failed|Skipped)$", re.M)


def hook_status(output: str) -> dict[str, str]:
    """{hook id: Passed | Failed | Skipped} from pre-commit's output."""
    by_name = {hook["name"]: hook_id for hook_id, hook in HOOKS.items()}
    found = {by_name.get(m["name"].strip(), m["name"].strip()): m["status"] for m in _STATUS.finditer(output)}
    return found


def configured_hooks() -> list[str]:
    config = load_yaml(DOCS / "pre-commit-config.yaml")
    assert isinstance(config, dict)
    return [hook["id"] for repo in config["repos"] for hook in repo["hooks"]]


def commit(repo: Path, env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    git(repo, "add", "-A")
    return run(["git", "commit", "-m", message], repo, env)


# -- the changes a review must refuse, and one it must let through -------------------------


def replace(path: Path, old: str, new: str) -> int:
    """Replace `old` (once in the file) and give the 1-based line where it was."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@dataclass
class Change:
    id: str
    apply: Callable[[Path], list[str]]  # edits the repository, gives what the output must say
    hooks: set[str] = field(default_factory=set)  # the pre-commit hooks that refuse it
    ci_steps: set[str] = field(default_factory=set)  # the workflow steps that refuse it


def broken_flow(repo: Path) -> list[str]:
    line = replace(repo / "flows/mx01-production-confirmations.yaml", "    jmespath: |", "    jmespth: |")
    return [f"flows/mx01-production-confirmations.yaml:{line}:5: unknown step 'jmespth'; did you mean 'jmespath'?"]


def failing_flow_test(repo: Path) -> list[str]:
    replace(repo / "flows/line-counts-mqtt-to-sql.yaml", "good: good, scrap: scrap", "good: scrap, scrap: good")
    return ["FAIL flows/line-counts-mqtt-to-sql.yaml: one line counter", '-  "good": 118,', '+  "good": 2,']


def template_breaking_an_instance(repo: Path) -> list[str]:
    replace(repo / "flows/templates/plant-production-confirmations.yaml", "good_quantity: good_qty,", "good_quantity: scrap_qty,")
    return ["FAIL flows/mx02-production-confirmations.yaml: two rows of the plant, one of another plant"]


def changed_expected_output(repo: Path) -> list[str]:
    # test data outside flows/: the tests run whatever changed
    replace(repo / "examples/expected/confirmation-4711-10.json", '"good_quantity": 400', '"good_quantity": 401')
    return ["FAIL flows/mx01-production-confirmations.yaml: three rows, two shop-floor plant names", "expected ../examples/expected/confirmation-4711-10.json"]


REFUSED = [
    Change("broken-flow", broken_flow, {"flowyard-validate", "flowyard-test"}, {"validate", "test"}),
    Change("failing-flow-test", failing_flow_test, {"flowyard-test"}, {"test"}),
    Change("changed-expected-output", changed_expected_output, {"flowyard-test"}, {"test"}),
    Change("template-breaks-instance", template_breaking_an_instance, {"flowyard-test", "flowyard-rendered-diff"}, {"test", "impact of template changes"}),
]


def harmless_template_change(repo: Path) -> list[str]:
    replace(repo / "flows/templates/plant-production-confirmations.yaml", "poll: 10s", "poll: 15s")
    return ["~ source (file): option 'poll' changed from '10s' to '15s'", "PASS test 'two rows of the plant, one of another plant'"]


# -- pre-commit ------------------------------------------------------------------------------


def test_the_documented_config_uses_hooks_this_repository_offers() -> None:
    hooks = configured_hooks()
    assert hooks and set(hooks) <= set(HOOKS), set(hooks) - set(HOOKS)
    assert {"flowyard-validate", "flowyard-test", "flowyard-rendered-diff"} <= set(hooks)


def test_a_new_repository_passes_and_makes_its_first_commit(tmp_path: Path, new_repo: Path, hook_env: dict[str, str]) -> None:
    repo = tmp_path / "flows-repo"
    shutil.copytree(new_repo, repo, symlinks=True)
    git(repo, "add", "-A")
    everything = run([PRE_COMMIT, "run", "--all-files"], repo, hook_env)
    assert everything.returncode == 0, everything.stdout
    assert hook_status(everything.stdout) == dict.fromkeys(configured_hooks(), "Passed"), everything.stdout

    first = commit(repo, hook_env, "MX01 flows")
    assert first.returncode == 0, first.stdout
    assert hook_status(first.stdout) == dict.fromkeys(configured_hooks(), "Passed"), first.stdout
    # the template's impact on the first commit: every instance is new, and its tests ran
    assert "flows/mx02-production-confirmations.yaml (mx02-production-confirmations, template plant-production-confirmations): new since an empty tree" in first.stdout
    assert "PASS test 'two rows of the plant, one of another plant'" in first.stdout
    assert git(repo, "log", "--format=%s").splitlines() == ["MX01 flows"]
    assert git(repo, "status", "--porcelain") == ""  # no hook rewrote anything


@pytest.mark.parametrize("change", REFUSED, ids=lambda c: c.id)
def test_the_hooks_refuse(repo: Path, hook_env: dict[str, str], change: Change) -> None:
    head = git(repo, "rev-parse", "HEAD")
    expected = change.apply(repo)
    refused = commit(repo, hook_env, change.id)
    assert refused.returncode != 0, refused.stdout
    status = hook_status(refused.stdout)
    assert {hook for hook, s in status.items() if s == "Failed"} == change.hooks, refused.stdout
    for text in expected:
        assert text in refused.stdout
    assert git(repo, "rev-parse", "HEAD") == head  # nothing committed


def test_the_hooks_let_a_harmless_template_change_through_and_show_its_impact(repo: Path, hook_env: dict[str, str]) -> None:
    expected = harmless_template_change(repo)
    done = commit(repo, hook_env, "poll MX plants every 15 s")
    assert done.returncode == 0, done.stdout
    assert hook_status(done.stdout)["flowyard-rendered-diff"] == "Passed", done.stdout
    for text in expected:
        assert text in done.stdout


def test_a_commit_without_definitions_passes(repo: Path, hook_env: dict[str, str]) -> None:
    """Only the repository's own files and test data change: nothing is taken for a flow."""
    (repo / ".pre-commit-config.yaml").write_text((repo / ".pre-commit-config.yaml").read_text(encoding="utf-8") + "# reviewed\n", encoding="utf-8")
    data = repo / "flows/tests/mx02-production-confirmations/confirmations.csv"
    data.write_text(data.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    (repo / "flows/tests/notes.yaml").write_text("source: the MX02 terminals\nsteps: exported at shift end\n", encoding="utf-8")
    done = commit(repo, hook_env, "notes")
    assert done.returncode == 0, done.stdout
    assert hook_status(done.stdout).get("flowyard-validate") == "Passed", done.stdout


# -- the CI workflow -------------------------------------------------------------------------

_EXPRESSION = re.compile(r"\$\{\{\s*([\w.]+)\s*\}\}")
_COMPARISON = re.compile(r"^([\w.]+)\s*(==|!=)\s*'([^']*)'$")


@dataclass
class StepRun:
    name: str
    returncode: int
    output: str


def workflow_steps() -> tuple[dict[str, str], list[dict[str, object]]]:
    workflow = load_yaml(DOCS / "github-workflow.yml")
    assert isinstance(workflow, dict)
    assert {"push", "pull_request"} <= set(workflow["on"])
    (job,) = workflow["jobs"].values()
    return dict(job.get("env") or {}), list(job["steps"])


def evaluate(value: str, context: dict[str, str]) -> str:
    def lookup(match: re.Match[str]) -> str:
        assert match[1] in context, f"this test does not know the workflow expression {match[0]}; add it to the context"
        return context[match[1]]

    return _EXPRESSION.sub(lookup, value)


def condition(text: str | None, context: dict[str, str], failed: bool) -> bool:
    """A step's `if:` as GitHub evaluates it, for the forms the workflow uses: terms
    joined by &&, each a status function or `github.NAME == 'value'` (or !=). No `if:`
    means success()."""
    expression = (text or "success()").strip().removeprefix("${{").removesuffix("}}")
    results = []
    for term in (t.strip() for t in expression.split("&&")):
        status = {"success()": not failed, "failure()": failed, "always()": True, "!cancelled()": True, "cancelled()": False}
        if term in status:
            results.append(status[term])
            continue
        match = _COMPARISON.match(term)
        assert match and match[1] in context, f"this test does not know how to evaluate {term!r} in the workflow condition {text!r}"
        results.append((context[match[1]] == match[3]) == (match[2] == "=="))
    if not any(term.strip() in ("always()", "!cancelled()", "failure()", "cancelled()") for term in expression.split("&&")):
        results.append(not failed)  # GitHub adds success() unless a status function is there
    return all(results)


def install_spec() -> str:
    config = load_yaml(DOCS / "pre-commit-config.yaml")
    assert isinstance(config, dict)
    (flowyard,) = config["repos"]
    return f"flowyard @ git+{flowyard['repo']}@{flowyard['rev']}"


@pytest.fixture(scope="session")
def hook_bin(committed_repo: Path, hook_env: dict[str, str]) -> Path:
    """The bin folder of the environment pre-commit built: Flowyard as pip installed it
    from the clone, which is what the workflow's install step gives CI."""
    found = sorted(Path(hook_env["PRE_COMMIT_HOME"]).glob("*/py_env-*/bin/flowyard"))
    assert found, f"no flowyard in the hook environments under {hook_env['PRE_COMMIT_HOME']}"
    return found[0].parent


def run_workflow(repo: Path, hook_bin: Path, event: str, base_ref: str = "") -> list[StepRun]:
    """The workflow's shell steps in `repo` as GitHub runs them (bash -eo pipefail, each
    step's `if:`); checkout and setup-python are what the test did."""
    job_env, steps = workflow_steps()
    context = {"github.event_name": event, "github.base_ref": base_ref, "github.ref_name": "main"}
    env = clean_env(CI="true", GITHUB_EVENT_NAME=event)
    env["PATH"] = os.pathsep.join([str(hook_bin), env["PATH"]])
    env.update({key: evaluate(str(value), context) for key, value in job_env.items()})
    runs: list[StepRun] = []
    for step in steps:
        if "uses" in step:
            assert str(step["uses"]).split("@")[0] in ("actions/checkout", "actions/setup-python"), step
            continue
        name, script = str(step.get("name", step["run"])), str(step["run"])
        if not condition(step.get("if"), context, failed=any(r.returncode for r in runs)):  # type: ignore[arg-type]
            continue
        assert "${{" not in script, f"step {name!r}: pass expressions through env:, not into the script"
        if re.match(r"\s*(python -m )?pip install", script):
            assert install_spec() in script, f"step {name!r} should install the release .pre-commit-config.yaml names"
            continue
        step_env = {**env, **{k: evaluate(str(v), context) for k, v in dict(step.get("env") or {}).items()}}  # type: ignore[call-overload]
        result = run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], repo, step_env, timeout=300)
        runs.append(StepRun(name, result.returncode, result.stdout))
    return runs


@pytest.fixture
def pull_request(repo: Path, committed_repo: Path) -> Path:
    """`repo` as a pull request's checkout: origin/main is the committed repository, the
    change goes on a branch."""
    git(repo, "remote", "add", "origin", str(committed_repo))
    git(repo, "fetch", "-q", "origin")
    git(repo, "checkout", "-q", "-b", "change")
    return repo


def commit_on_branch(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)


def test_ci_passes_a_push(repo: Path, hook_bin: Path) -> None:
    runs = run_workflow(repo, hook_bin, "push")
    assert [r.name for r in runs] == ["layout", "validate", "test"]
    assert all(r.returncode == 0 for r in runs), runs
    assert "4 passed, 0 failed" in runs[-1].output


def test_ci_passes_a_harmless_pull_request(pull_request: Path, hook_bin: Path) -> None:
    expected = harmless_template_change(pull_request)
    commit_on_branch(pull_request, "poll every 15 s")
    runs = run_workflow(pull_request, hook_bin, "pull_request", "main")
    assert [r.name for r in runs] == ["layout", "validate", "test", "impact of template changes", "what changed, in words"]
    assert all(r.returncode == 0 for r in runs), runs
    for text in expected:
        assert text in runs[3].output


@pytest.mark.parametrize("change", REFUSED, ids=lambda c: c.id)
def test_ci_refuses(pull_request: Path, hook_bin: Path, change: Change) -> None:
    expected = change.apply(pull_request)
    commit_on_branch(pull_request, change.id)
    runs = run_workflow(pull_request, hook_bin, "pull_request", "main")
    assert [r.name for r in runs] == ["layout", "validate", "test", "impact of template changes", "what changed, in words"]  # every check ran
    assert {r.name for r in runs if r.returncode != 0} == change.ci_steps, runs
    output = "".join(r.output for r in runs if r.returncode != 0)
    for text in expected:
        assert text in output
