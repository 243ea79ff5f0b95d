"""The commands that write generated files, or with --check say whether they are stale: `diagram`
(diagrams/ and README's diagram section), `vectors` (specs/vectors) and `rules` (docs/rules.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cometchat_fsm import places
from cometchat_fsm.cli.usage import PROG
from cometchat_fsm.files import writable_directory
from cometchat_fsm.pictures import diagram


def diagram_command(args: argparse.Namespace) -> int:
    directory: Path = places.diagrams_directory() if args.dir is None else args.dir
    readme = places.readme() if args.dir is None else None
    svg_note = f"(no SVG: {diagram.SVG_EXTRA} to draw it)"
    if args.check:
        problems = diagram.check_diagrams(directory, readme=readme)
        if problems:
            listed = ", ".join(f"{name} ({kind})" for name, kind in problems.items())
            print(f"diagrams in {directory}: {listed}; run `{PROG} diagram`")
            return 1
        print("diagrams are up to date" + ("" if diagram.can_draw_svg() else f" {svg_note}"))
        return 0
    for path in diagram.write_diagrams(writable_directory(directory), readme=readme):
        print(path)
    if not diagram.can_draw_svg():
        print(svg_note)
    return 0


def vectors_command(args: argparse.Namespace) -> int:
    from cometchat_fsm.conformance.specs import load_specs
    from cometchat_fsm.conformance.vectors import generate, stale, write

    out = None if args.check else writable_directory(
        places.vectors_directory() if args.dir is None else args.dir)  # before the work
    specs = load_specs()
    files = generate(specs)
    if out is None:
        directory: Path = specs.directory / "vectors" if args.dir is None else args.dir
        bad = stale(directory, files)
        if bad:
            listed = [f"{name} ({kind})" for name, kind in bad.items()]
            more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
            print(f"vectors in {directory}: {', '.join(listed[:10])}{more}; run `{PROG} vectors`")
            return 1
        print(f"{len(files) - 1} vectors in {directory} are up to date")
        return 0
    write(out, files)
    print(f"wrote {len(files) - 1} vectors and index.json to {out}")
    return 0


def rules_command(args: argparse.Namespace) -> int:
    from cometchat_fsm.cli import rules_doc
    from cometchat_fsm.conformance.specs import load_specs

    specs = load_specs()
    path: Path = args.out or rules_doc.default_path(specs)
    text = rules_doc.render(specs)
    if args.check:
        problem = rules_doc.problem(path, text)
        if problem is not None:
            print(f"{path}: {problem}; run `{PROG} rules`")
            return 1
        print(f"{path} is up to date")
        return 0
    writable_directory(path.parent)
    print(f"{path}: {'written' if rules_doc.write(path, text) else 'already up to date'}")
    return 0
