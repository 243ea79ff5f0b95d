"""Driver: the real CometChat JavaScript SDK under Node.

Run as `python -m cometchat_fsm.conformance.drivers.js_sdk`.

At first use the SDK and the fake timers are installed from the npm registry into a cache
directory (`$COMETCHAT_FSM_CACHE`, else the user cache directory of platformdirs), never into
the package; then `drivers/js/driver.mjs` runs under `node` with fake timers, a fake WebSocket
and fake HTTP endpoints (no network). Needs Node 18 or later (tested with 20) and npm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import platformdirs

SDK = "@cometchat/chat-sdk-javascript"
SDK_VERSION = "4.2.0"
FAKE_TIMERS = "@sinonjs/fake-timers"
FAKE_TIMERS_VERSION = "13.0.5"
CACHE_ENV_VAR = "COMETCHAT_FSM_CACHE"
MIN_NODE = 18
#: Bound on `npm install` (seconds).
INSTALL_TIMEOUT = 300.0
DRIVER = Path(__file__).resolve().parent / "js" / "driver.mjs"


class JsSetupError(Exception):
    """Node or npm is missing, too old, or the install from the npm registry failed."""


def cache_directory() -> Path:
    """Where the npm packages go: `$COMETCHAT_FSM_CACHE/js-sdk-<version>` or the user cache."""
    base = os.environ.get(CACHE_ENV_VAR) or platformdirs.user_cache_dir("cometchat-fsm")
    return Path(base) / f"js-sdk-{SDK_VERSION}"


def node_version(node: str | None = None) -> tuple[int, str]:
    """(major version, full text) of `node`; JsSetupError when it is missing or does not answer."""
    exe = node or shutil.which("node")
    if exe is None:
        raise JsSetupError("node is not on PATH (the JS SDK driver needs Node >= 18)")
    try:
        text = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise JsSetupError(f"node does not answer: {exc}") from None
    try:
        major = int(text.lstrip("v").split(".")[0])
    except ValueError:
        raise JsSetupError(f"cannot read node's version from {text!r}") from None
    return major, text


def installed(directory: Path) -> bool:
    package = directory / "node_modules" / SDK / "package.json"
    timers = directory / "node_modules" / FAKE_TIMERS / "package.json"
    try:
        return json.loads(package.read_text())["version"] == SDK_VERSION and timers.is_file()
    except (OSError, ValueError, KeyError):
        return False


def ensure_sdk(directory: Path | None = None) -> Path:
    """Install the SDK and the fake timers into the cache at first use; return the directory."""
    target = directory or cache_directory()
    major, text = node_version()
    if major < MIN_NODE:
        raise JsSetupError(f"node {text} is too old (needs >= {MIN_NODE})")
    if installed(target):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise JsSetupError("npm is not on PATH (needed once, to install the SDK into the cache)")
    target.mkdir(parents=True, exist_ok=True)
    (target / "package.json").write_text(json.dumps({
        "name": "cometchat-fsm-js-driver", "private": True,
        "dependencies": {SDK: SDK_VERSION, FAKE_TIMERS: FAKE_TIMERS_VERSION}}, indent=2) + "\n")
    print(f"js_sdk driver: installing {SDK}@{SDK_VERSION} and {FAKE_TIMERS}@{FAKE_TIMERS_VERSION} "
          f"into {target}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts",
                               "--loglevel=error"], cwd=target, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise JsSetupError(f"npm install did not run to its end: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise JsSetupError(f"npm install failed (is the npm registry reachable?): exit "
                           f"{done.returncode}: {tail}")
    if not installed(target):
        raise JsSetupError(f"npm install finished but {SDK}@{SDK_VERSION} is not in {target}")
    return target


def command() -> list[str]:
    """The `conform` command line for this driver."""
    return [sys.executable, "-m", "cometchat_fsm.conformance.drivers.js_sdk"]


def main() -> int:
    try:
        modules = ensure_sdk()
    except JsSetupError as exc:
        print(f"js_sdk driver: {exc}", file=sys.stderr)
        return 3
    node = shutil.which("node")
    assert node is not None
    env = {**os.environ, "COMETCHAT_FSM_JS_MODULES": str(modules)}
    os.execve(node, [node, str(DRIVER)], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
