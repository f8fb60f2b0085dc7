"""Every shell command in the README's ```sh blocks, run exactly as written from the repository root.

Each command (a line, or lines joined by a trailing backslash) runs under ``bash -c`` with
``.venv/bin`` (the interpreter running the tests) first on PATH, in README order (later commands use
what earlier ones wrote: ``export`` reads the ``train`` run). Outputs go to ``out/readme/``, removed
first. The few commands that cannot run here are listed in SKIP with the reason; a command that is
neither run successfully nor listed fails the test, so a README edit cannot add an untested command.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# command (exactly as in the README) -> why it is not run by this test
SKIP = {
    "make test": "is this test suite itself",
    "make demo": "runs `make install`, which reinstalls the package under test; its segment/evaluate "
                 "steps are the commands of the 'Command line' block, which run here",
    "cmake -S . -B build/lib && cmake --build build/lib -j && cmake --install build/lib --prefix /opt/unet_rt":
        "a full native build (minutes) installing into /opt; tests/test_cpp_example.py builds and installs "
        "the library the same way into a temporary prefix and builds the example against it",
    "unet-rt train --data data/isbi2012 --out runs/isbi --train-slices 0-22 --val-slices 23-24 "
    "--class-names membrane,cell --steps 3000 --threads 2":
        "the shipped model's 67-minute training run; the tiny `unet-rt train` line of the 'Command line' "
        "block runs instead (tests/test_train.py covers the recipe, resume, guard and calibration)",
    "unet-rt calibrate runs/isbi/model.plan --data data/samples --slices 23-24 --dense":
        "calibrates the run above (tests/test_calibrate.py runs `unet-rt calibrate`)",
    "cp runs/isbi/model.plan src/unet_rt/models/isbi2012-unet16.plan": "installs the model trained above",
    "make gpu-check": "needs a CUDA GPU (none here) and then runs `make install`; tests/test_gpu_check.py runs "
                      "it here and checks that it stops at once, before the install, with the no-GPU message",
}


def readme_commands() -> list[tuple[int, str]]:
    """(line number, command) of every command in a ```sh block."""
    out, block, start, cur = [], False, 0, ""
    for n, line in enumerate(README.read_text().splitlines(), 1):
        if re.match(r"^```(sh|bash|shell|console)\s*$", line):
            block = True
            continue
        if block and line.startswith("```"):
            block = False
            continue
        if not block:
            continue
        if not cur:
            start = n
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1].rstrip() + " "
            continue
        cur += line.strip()
        if cur.strip() and not cur.lstrip().startswith("#"):
            out.append((start, cur.strip()))
        cur = ""
    return out


COMMANDS = readme_commands()


def bare(cmd: str) -> str:
    """The command without a trailing ``# comment`` (how SKIP names it)."""
    return re.sub(r"\s+#[^'\"]*$", "", cmd).strip()


def test_readme_has_commands_and_skips_are_current():
    cmds = [bare(c) for _, c in COMMANDS]
    assert any(c.startswith("unet-rt train ") for c in cmds if c not in SKIP)
    assert any(c.startswith("unet-rt segment ") for c in cmds)
    stale = [k for k in SKIP if k not in cmds]
    assert not stale, f"SKIP lists commands no longer in the README: {stale}"


@pytest.fixture(scope="module")
def shell_env():
    shutil.rmtree(ROOT / "out" / "readme", ignore_errors=True)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("line,cmd", COMMANDS, ids=[f"README:{n}" for n, _ in COMMANDS])
def test_readme_command(line, cmd, shell_env):
    if bare(cmd) in SKIP:
        pytest.skip(f"README line {line}: {SKIP[bare(cmd)]}")
    r = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=shell_env, capture_output=True, text=True,
                       timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"README line {line}: {cmd}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
