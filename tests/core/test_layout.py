"""The repo layout must not shadow the standard library, and the wheel must hold it all."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_platform_is_the_standard_library_under_pytest() -> None:
    import platform

    assert platform.system()  # the stdlib function, not our folder
    assert Path(platform.__file__).parent != ROOT / "platform"


def test_platform_is_the_standard_library_in_the_installed_environment() -> None:
    # From the repo root, with the repo root first on sys.path (python -c does that).
    code = "import platform, flowyard; print(platform.system()); print(flowyard.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    system, location = out.stdout.split()
    assert system == platform_system()
    assert location.endswith("flowyard/__init__.py")


def platform_system() -> str:
    import platform

    return platform.system()


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "flowyard"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("validate", "test", "run", "schema"):
        assert command in out.stdout


def test_wheel_contains_every_package_and_data_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("flowyard-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT / "platform").as_posix() for p in (ROOT / "platform" / "flowyard").rglob("*.py")}
    expected |= {p.relative_to(ROOT / "platform").as_posix() for p in (ROOT / "platform" / "flowyard" / "canonical").glob("*.json")}
    expected |= {p.relative_to(ROOT / "connectors").as_posix() for p in (ROOT / "connectors" / "flowyard_connectors").rglob("*.py")}
    expected |= {p.relative_to(ROOT / "ui").as_posix() for p in (ROOT / "ui" / "flowyard_ui").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel: {missing[:10]}"
    assert not any(n.startswith("platform/") for n in names), "the folder name must not become an import name"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[flowyard.steps]" in text and "jmespath = flowyard.steps.jmespath_step:JmesPath" in text
