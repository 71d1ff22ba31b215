"""Check the package as it is installed, not as it sits in the source tree (`make wheel-check`).

1. Builds the sdist, and the wheel from that sdist (`python -m build`, as a release would),
   into a temporary folder.
2. `twine check --strict` on both.
3. The wheel holds `modelslab_widget/py.typed`, every non-.py file git tracks under
   `modelslab_widget/` (the simulator's sample videos), and the LICENSE; the sdist the LICENSE.
4. A fresh venv in a temporary folder gets the wheel (its dependencies from PyPI, through pip's
   own cache); from a folder outside the source tree, `modelslab-widget --version` and a
   simulator run launched with `WorkflowsClient.run_workflow` and watched with `get_run` until
   it completed.

Everything goes in one temporary folder, removed at the end (`--keep` keeps it). Any problem:
a line starting `wheel-check FAILED:` on stderr and exit status 1.

    python tools/check_wheel.py [--keep]

The build is isolated (hatchling as pyproject.toml asks for it) and, like the venv's install,
gets its packages from PyPI through pip's cache, so a second run downloads nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "modelslab_widget"
RUN_TIMEOUT = 60.0  # seconds for the demo run to complete (it takes about 5)
COMMAND_TIMEOUT = 600.0  # seconds for any one command (a build or an install from PyPI)

# Runs in the fresh venv, from a folder outside the source tree.
SMOKE = r"""
import sys, time
from pathlib import Path
import modelslab_widget
from modelslab_widget import WorkflowsClient
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Simulator
from modelslab_widget.simulator.media import sample_video

where = Path(modelslab_widget.__file__).resolve()
source = Path(sys.argv[1]).resolve()
assert source not in where.parents, f"imported from the source tree: {where}"
assert sys.prefix != sys.base_prefix, "not running in the venv"
assert Path(sys.prefix).resolve() in where.parents, f"not imported from the venv: {where}"
assert (where.parent / "py.typed").is_file(), "py.typed is not installed"
assert sample_video("mp4")[4:8] == b"ftyp", "the simulator's sample video is not installed"

timeout = float(sys.argv[2])
with Simulator() as sim:
    client = WorkflowsClient(sim.api_key, base_url=sim.base_url)
    try:
        execution_id = client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "x"})
        deadline = time.monotonic() + timeout
        while True:
            snapshot = client.get_run(DEMO_WORKFLOW_ID, execution_id)
            if snapshot.is_terminal:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"run {execution_id} still {snapshot.status!r} after {timeout} s")
            time.sleep(0.25)
    finally:
        client.close()
assert snapshot.status == "completed", f"run ended {snapshot.status!r}: {snapshot.error!r}"
assert snapshot.outputs, "the completed run has no outputs"
print(f"run {execution_id} completed with {len(snapshot.outputs)} outputs, "
      f"from {where.parent}")
"""


class CheckFailed(Exception):
    pass


def step(message: str) -> None:
    print(f"wheel-check: {message}", flush=True)


def run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        what: str) -> str:
    """Run a command; its output is shown only when it fails (then with the command)."""
    started = time.monotonic()
    shown = " ".join("<script>" if "\n" in part else part for part in command)
    try:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        raise CheckFailed(f"{what}: no end after {COMMAND_TIMEOUT:.0f} s: {shown}") from error
    if result.returncode != 0:
        raise CheckFailed(f"{what} (exit {result.returncode}): {shown}\n"
                          f"{result.stdout.rstrip()}")
    step(f"{what}: ok ({time.monotonic() - started:.1f} s)")
    return result.stdout


def version() -> str:
    text = (ROOT / PACKAGE / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise CheckFailed(f"no __version__ in {PACKAGE}/_version.py")
    return match.group(1)


def package_data() -> list[str]:
    """The non-.py files under the package that git tracks (the files the wheel must ship)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", PACKAGE], cwd=ROOT, check=True,
                                stdout=subprocess.PIPE, text=True).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the folder
        listed = [path.relative_to(ROOT).as_posix() for path in (ROOT / PACKAGE).rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts]
    return sorted(name for name in listed if name and not name.endswith((".py", ".pyc")))


def check_contents(wheel: Path, sdist: Path, name_version: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    wanted = [f"{PACKAGE}/py.typed", *package_data(),
              f"{name_version}.dist-info/licenses/LICENSE"]
    missing = [name for name in dict.fromkeys(wanted) if name not in names]
    if missing:
        raise CheckFailed(f"the wheel {wheel.name} lacks: {', '.join(missing)}")
    step(f"the wheel holds {', '.join(dict.fromkeys(wanted))}: ok")
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    top = sdist.name.removesuffix(".tar.gz")
    wanted = [f"{top}/LICENSE", f"{top}/{PACKAGE}/py.typed", f"{top}/pyproject.toml"]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise CheckFailed(f"the sdist {sdist.name} lacks: {', '.join(missing)}")
    step("the sdist holds LICENSE, py.typed, pyproject.toml: ok")


def clean_env() -> dict[str, str]:
    """The environment minus what would point the venv's Python back at the source tree."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONSAFEPATH"] = "1"  # the script's folder is not put on sys.path
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_wheel.py", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mlw-wheel-check-"))
    try:
        expected = version()
        dist, venv, outside = tmp / "dist", tmp / "venv", tmp / "elsewhere"
        outside.mkdir()
        env = clean_env()

        run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp,
            env=env, what="build the sdist, then the wheel from it")
        wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            raise CheckFailed(f"expected one wheel and one sdist in {dist}, found "
                              f"{[path.name for path in dist.iterdir()]}")
        wheel, sdist = wheels[0], sdists[0]
        name_version = f"{PACKAGE}-{expected}"
        if not wheel.name.startswith(name_version + "-"):
            raise CheckFailed(f"the wheel is {wheel.name}, not version {expected}")

        run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
            cwd=tmp, env=env, what="twine check --strict")
        check_contents(wheel, sdist, name_version)

        # No pip in the venv (ensurepip is the slow part): this Python's pip installs into it.
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env,
            what="create a fresh venv")
        python = venv / "bin" / "python"
        run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
             "--no-compile", str(wheel)], cwd=outside, env=env, what="install the wheel into it")

        output = run([str(venv / "bin" / "modelslab-widget"), "--version"], cwd=outside,
                     env=env, what="modelslab-widget --version").strip()
        if output != f"modelslab-widget {expected}":
            raise CheckFailed(f"modelslab-widget --version printed {output!r}, "
                              f"not 'modelslab-widget {expected}'")
        output = run([str(python), "-c", SMOKE, str(ROOT), str(RUN_TIMEOUT)], cwd=outside,
                     env=env, what="a simulator run from the installed package")
        step(output.strip())
    except (CheckFailed, OSError) as error:
        print(f"wheel-check FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        if args.keep:
            step(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    step(f"all checks passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
