"""The wheel, installed as a user would install it, runs every command from anywhere.

Builds the wheel of this checkout, installs it (with the `check` extra, without `svg`) into a
fresh virtual environment in a temporary directory outside the repository, and from another
temporary directory runs `--version`, `check --profile quick`, the README's `simulate` script,
`diagram` (default place and `--dir`, then `--check`), `vectors --check` on the shipped vectors,
`vectors DIR` then `vectors --check DIR`, `rules`, `check-trace` on a shipped vector and on all
of them, `demo`,
`conform` against the shipped Simulation driver (and that the JS driver's script ships), and the
README's Python examples twice each with one session store. It also checks that nothing was
written into site-packages. Prints a line per step; exit 0 when all pass, 1 otherwise.

Usage: python tools/check_wheel.py [--keep] [--extras check]   (run by `make test`)
       python tools/check_wheel.py --sizes   (also installs base and all extras, prints the sizes)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from readme_examples import EXPECTED, NAMES, examples, simulate_script  # noqa: E402

STEP_LIMIT = 300.0  # seconds for any one command (installing may download)


class Failed(Exception):
    pass


def run(cmd: Sequence[str | Path], *, cwd: Path, env: dict[str, str], expect: int = 0) -> str:
    """Run one command; its output, or Failed naming the command, status and output tail."""
    shown = " ".join(str(c) for c in cmd)
    try:
        done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=STEP_LIMIT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failed(f"{shown}: no end after {STEP_LIMIT:g} s") from None
    out = done.stdout + done.stderr
    if done.returncode != expect:
        tail = "\n    ".join(out.strip().splitlines()[-15:])
        raise Failed(f"{shown}: exit {done.returncode}, expected {expect}\n    {tail}")
    if "Traceback" in out:
        raise Failed(f"{shown}: printed a traceback\n{out}")
    return out


def build_wheel(out: Path, env: dict[str, str]) -> Path:
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, ROOT],
        cwd=out, env=env)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = out.glob("cometchat_fsm-*.whl")
    return wheel


def make_venv(where: Path, wheel: Path, extras: str, env: dict[str, str]) -> Path:
    run([sys.executable, "-m", "venv", where], cwd=where.parent, env=env)
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    run([where / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", target],
        cwd=where.parent, env=env)
    return where / "bin"


def site_packages(bin_dir: Path, env: dict[str, str]) -> Path:
    out = run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
              cwd=bin_dir, env=env)
    return Path(out.strip())


VENV_OWN = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth")


def size_mib(packages: Path) -> float:
    """What the install added to site-packages, in MiB (the venv's own pip and setuptools left out)."""
    return sum(p.stat().st_size for top in packages.iterdir() if not top.name.startswith(VENV_OWN)
               for p in (top.rglob("*") if top.is_dir() else [top]) if p.is_file()) / 2**20


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if "__pycache__" not in p.parts}


def expect_in(out: str, text: str, what: str) -> None:
    if text not in out:
        raise Failed(f"{what}: expected {text!r} in the output:\n{out}")


def commands(bin_dir: Path, work: Path, env: dict[str, str], svg: bool, plot: bool = False) -> None:
    """Every command from `work` (a temporary directory); raises Failed at the first problem."""
    cli = bin_dir / "cometchat-fsm"
    step = Steps()
    with step("--version"):
        expect_in(run([cli, "--version"], cwd=work, env=env), "cometchat-fsm ", "--version")
    with step("check --profile quick"):
        expect_in(run([cli, "check", "--profile", "quick"], cwd=work, env=env), "0 failed", "check")
    with step("simulate (the README's script)"):
        expect_in(run([cli, "simulate", "--manual", simulate_script()], cwd=work, env=env),
                  "on_disconnected", "simulate")
    if not plot:
        with step("simulate --plot without matplotlib: one line, exit 2"):
            out = run([cli, "simulate", "login alice", "--plot", work / "run.png"], cwd=work, env=env,
                      expect=2)
            expect_in(out, "pip install 'cometchat-fsm[plot]'", "simulate --plot without the plot extra")
    with step("diagram, diagram --dir, diagram --check"):
        out = run([cli, "diagram"], cwd=work, env=env)
        for name in ("lifecycle.mmd", "lifecycle.dot", *(("lifecycle.svg",) if svg else ())):
            if not (work / "diagrams" / name).is_file():
                raise Failed(f"diagram wrote no {name} into ./diagrams:\n{out}")
        if not svg:
            expect_in(out, "cometchat-fsm[svg]", "diagram without pygraphviz")
        run([cli, "diagram", "--dir", work / "elsewhere"], cwd=work, env=env)
        run([cli, "diagram", "--check", "--dir", work / "elsewhere"], cwd=work, env=env)
        expect_in(run([cli, "diagram", "--check", "--dir", work / "none"], cwd=work, env=env, expect=1),
                  "lifecycle.mmd (missing)", "diagram --check on an empty place")
    with step("vectors --check (shipped), vectors DIR, vectors --check DIR"):
        expect_in(run([cli, "vectors", "--check"], cwd=work, env=env), "up to date", "vectors --check")
        run([cli, "vectors", work / "vectors-out"], cwd=work, env=env)
        run([cli, "vectors", "--check", work / "vectors-out"], cwd=work, env=env)
    with step("rules, rules --check"):
        run([cli, "rules"], cwd=work, env=env)
        expect_in(run([cli, "rules", "--check"], cwd=work, env=env), "up to date", "rules --check")
        if not (work / "docs" / "rules.md").is_file():
            raise Failed("rules wrote no ./docs/rules.md")
    with step("check-trace on a shipped vector, then on all of them in one run"):
        where = "from cometchat_fsm import places; print(places.shipped_specs())"
        shipped = run([bin_dir / "python", "-c", where], cwd=work, env=env).strip()
        expect_in(run([cli, "check-trace", Path(shipped) / "vectors" / "M2-1.jsonl"], cwd=work, env=env),
                  "pass:", "check-trace")
        expect_in(run([cli, "check-trace", Path(shipped) / "vectors"], cwd=work, env=env),
                  "0 fail, 0 malformed", "check-trace DIR")
    with step("demo (two live clients on loopback)"):
        run([cli, "demo"], cwd=work, env=env)
    with step("conform against the shipped Simulation driver; the JS driver ships"):
        driver = [bin_dir / "python", "-m", "cometchat_fsm.conformance.drivers.simulation"]
        expect_in(run([cli, "conform", "--examples", "20", "--", *driver], cwd=work, env=env),
                  "0 failed", "conform")
        where = "from cometchat_fsm.conformance.drivers import js_sdk; print(js_sdk.DRIVER.is_file())"
        expect_in(run([bin_dir / "python", "-c", where], cwd=work, env=env), "True",
                  "driver.mjs in the wheel")
    for index, source in enumerate(examples()):
        with step(f"README example {NAMES[index]}, twice"):
            script = work / f"example_{index}.py"
            script.write_text(source, encoding="utf-8")
            for attempt in (1, 2):
                out = run([bin_dir / "python", script], cwd=work, env=env)
                if out.splitlines() != EXPECTED[index]:
                    raise Failed(f"run {attempt} printed {out.splitlines()}, expected {EXPECTED[index]}")


class Steps:
    """`with step(name):` prints the step's name and time as it ends."""

    def __call__(self, name: str) -> Steps:
        self.name, self.start = name, time.monotonic()
        return self

    def __enter__(self) -> None:
        print(f"  {self.name} ...", end="", flush=True)

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        print(f" {'ok' if kind is None else 'FAILED'} ({time.monotonic() - self.start:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="check", help="extras to install (default: check)")
    parser.add_argument("--sizes", action="store_true", help="also print site-packages sizes per extra")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="cometchat-fsm-wheel-"))
    unset = ("VIRTUAL_ENV", "PYTHONPATH", "COMETCHAT_FSM_SPECS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(HOME=str(top / "home"), XDG_DATA_HOME=str(top / "home" / "data"))
    pip_cache = os.environ.get("PIP_CACHE_DIR")
    if pip_cache is None:  # the fresh home would hide pip's cache: keep the user's
        env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    try:
        print(f"wheel check in {top}")
        (top / "home").mkdir()
        wheel = build_wheel(top, env)
        print(f"  built {wheel.name}")
        bin_dir = make_venv(top / "venv", wheel, args.extras, env)
        packages = site_packages(bin_dir, env)
        before = tree(packages / "cometchat_fsm")
        work = top / "work"
        work.mkdir()
        commands(bin_dir, work, env, svg="svg" in args.extras or "all" in args.extras,
                 plot="plot" in args.extras or "all" in args.extras)
        added = tree(packages / "cometchat_fsm") - before
        if added:
            raise Failed(f"commands wrote into site-packages: {sorted(added)}")
        print(f"  site-packages with [{args.extras}]: {size_mib(packages):.1f} MiB")
        if args.sizes:
            for extras in ("", "all"):
                other = make_venv(top / f"venv-{extras or 'base'}", wheel, extras, env)
                print(f"  site-packages with [{extras}]: {size_mib(site_packages(other, env)):.1f} MiB")
    except Failed as exc:
        print(f"\nwheel check FAILED: {exc}")
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    print("wheel check passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
