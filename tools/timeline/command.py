"""``raftlab timeline RUN``: write a bundle's ``timeline.html`` from its ``events.jsonl``.

RUN is a failure bundle folder (``.raftlab/failures/<test>-seed<S>/``, written
by every failing graded test) or an ``events.jsonl`` file.  The page is
written beside the events file (``timeline.html``), or where ``-o`` says; a
newer raftlab redraws an old bundle this way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labtests.timeline.html import render
from labtests.timeline.recorder import load_jsonl

EVENTS = "events.jsonl"
PAGE = "timeline.html"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab timeline",
        description="Write the HTML timeline of a failing run and print its path.")
    parser.add_argument("run", metavar="RUN",
                        help="a failure bundle folder (.raftlab/failures/<test>-seed<S>) "
                             "or an events.jsonl file")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help=f"where to write the page (default: {PAGE} beside the events)")
    return parser


def events_file(run: Path) -> Path:
    """The events file RUN names; ValueError with what to do if there is none."""
    if run.is_dir():
        candidate = run / EVENTS
        if not candidate.is_file():
            raise ValueError(f"{run} has no {EVENTS}: give a failure bundle folder (one is "
                             f"written for each failing test under .raftlab/failures/) or "
                             f"an {EVENTS} file")
        return candidate
    if run.is_file():
        return run
    raise ValueError(f"no such file or folder: {run}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        source = events_file(Path(args.run))
    except ValueError as exc:
        return _error(str(exc))
    try:
        head, events = load_jsonl(source.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return _error(f"{source}: not a text file (expected {EVENTS})")
    except OSError as exc:
        return _error(f"cannot read {source}: {exc}")
    except ValueError as exc:
        return _error(f"{source}: {exc} (expected {EVENTS} of a failure bundle)")
    out = Path(args.output) if args.output else source.parent / PAGE
    try:
        out.write_text(render(head, events), encoding="utf-8")
    except OSError as exc:
        return _error(f"cannot write {out}: {exc}")
    print(out.resolve())
    return 0


def _error(message: str) -> int:
    print(f"raftlab timeline: {message}", file=sys.stderr)
    return 2
