"""``raftlab logs``: read a debug log with coloured topics and one column per peer.

The line layout is fixed by :mod:`raft.debuglog` (``<ms:06d> <TOPIC> <who> <message>``,
``who`` being ``S<peer>`` or ``--`` for the tester).  The viewer is three small steps:

* :func:`parse_line` (pure) turns one text line into a :class:`LogLine` or a :class:`RawLine`;
* :func:`keep` (pure) applies ``--just`` / ``--ignore``;
* :class:`Renderer` prints with rich, either one line per event or with each peer's
  messages in its own column (``-c N``); tester lines span all columns.

Lines that do not parse (pytest output, tracebacks) are printed verbatim between rules
of ``#`` so that they stand out in a long log -- they usually say *why* the run failed.
Messages are rendered as plain :class:`rich.text.Text`, never as markup, so a message
that contains ``[brackets]`` cannot garble the output (dslogs had that bug).

Input that cannot be a debug log is refused rather than dumped: binary data (a NUL
byte, or mostly bytes that are not UTF-8 text, in the first 8 KiB) gives "not a debug
log" and an empty input "empty log", both on stderr with exit status 1.

Usage::

    raftlab logs run.log                 # whole log, coloured
    raftlab logs -c 3 -i TIMR run.log    # three peer columns, without timer noise
    pytest ... -s 2>&1 | raftlab logs -c 5 -j TEST,LEAD,VOTE -
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from raft.debuglog import TOPICS

# Colours of dslogs (José González's "Debugging by Pretty Printing"), one per topic.
TOPIC_COLOURS: dict[str, str] = {
    "TIMR": "#9a9a99",
    "VOTE": "#67a0b2",
    "LEAD": "#d0b343",
    "TERM": "#70c43f",
    "LOG1": "#4878bc",
    "LOG2": "#398280",
    "CMIT": "#98719f",
    "PERS": "#d08341",
    "SNAP": "#fd971f",
    "DROP": "#ff615c",
    "CLNT": "#00813c",
    "TEST": "#fe2c79",
    "INFO": "#ffffff",
    "WARN": "#d08341",
    "ERRO": "#fe2626",
    "TRCE": "#fe2626",
}
assert set(TOPIC_COLOURS) == set(TOPICS), "every debug topic needs a colour"

_LINE_RE = re.compile(r"^(?P<ms>\d+) (?P<topic>[A-Z0-9]{1,4}) *(?P<who>S\d+|--)(?: (?P<msg>.*))?$")


@dataclass(frozen=True)
class LogLine:
    """One parsed debug line; ``peer`` is ``None`` for tester lines (``--``)."""

    ms: int
    topic: str
    peer: int | None
    message: str


@dataclass(frozen=True)
class RawLine:
    """A line that is not in the debug format, shown verbatim."""

    text: str


Entry = LogLine | RawLine


def parse_line(line: str) -> Entry:
    """Parse one line (trailing newline allowed); anything unexpected is a RawLine.

    A line whose topic is not one of ``TOPICS`` is raw too: it was not written by
    :func:`raft.debuglog.dlog`, so guessing at its meaning would mislead.
    """
    text = line.rstrip("\r\n")
    m = _LINE_RE.match(text)
    if m is None or m["topic"] not in TOPICS:
        return RawLine(text)
    who = m["who"]
    peer = None if who == "--" else int(who[1:])
    return LogLine(int(m["ms"]), m["topic"], peer, m["msg"] or "")


def parse_topics(spec: str) -> frozenset[str]:
    """Turn ``"vote,LEAD"`` into ``{"VOTE", "LEAD"}``; ValueError names unknown topics."""
    names = [part.strip().upper() for part in spec.split(",") if part.strip()]
    unknown = [n for n in names if n not in TOPICS]
    if unknown:
        raise ValueError(
            f"unknown topic(s) {', '.join(unknown)}; valid topics are {', '.join(TOPICS)}"
        )
    return frozenset(names)


def keep(entry: Entry, just: frozenset[str] | None, ignore: frozenset[str]) -> bool:
    """Whether ``entry`` survives the topic filters; raw lines are always kept."""
    if isinstance(entry, RawLine):
        return True
    if just is not None and entry.topic not in just:
        return False
    return entry.topic not in ignore


def entries(lines: Iterable[str], just: frozenset[str] | None = None,
            ignore: frozenset[str] = frozenset()) -> Iterator[Entry]:
    """Parse and filter a stream of lines lazily (so ``tail -f | raftlab logs`` works)."""
    for line in lines:
        entry = parse_line(line)
        if keep(entry, just, ignore):
            yield entry


class Renderer:
    """Prints entries to a rich Console, in single-line or per-peer column layout.

    Consecutive raw lines form one block between two ``#`` rules.  In column mode
    each peer line becomes a row of ``columns`` equal cells; a line of a peer outside
    ``0..columns-1``, and every tester line, spans the full width.
    """

    def __init__(self, console: Console, columns: int | None = None) -> None:
        if columns is not None and columns < 1:
            raise ValueError("columns must be at least 1")
        self.console = console
        self.columns = columns
        self._in_raw_block = False
        self._header_done = False

    def _style(self, topic: str) -> str:
        return "" if self.console.no_color else TOPIC_COLOURS[topic]

    def _rule(self) -> None:
        self.console.print("#" * self.console.width, style="dim", no_wrap=True,
                           overflow="crop", highlight=False)

    def _header(self) -> None:
        assert self.columns is not None
        grid = self._grid()
        grid.add_row(*[Text(f"S{i}", style="bold underline") for i in range(self.columns)])
        self.console.print(grid)

    def _grid(self) -> Table:
        assert self.columns is not None
        grid = Table.grid(expand=True, padding=(0, 1))
        for _ in range(self.columns):
            grid.add_column(ratio=1, overflow="fold")
        return grid

    def _full_line(self, entry: LogLine, with_time: bool) -> Text:
        who = "--" if entry.peer is None else f"S{entry.peer}"
        parts = [f"{entry.ms:06d} "] if with_time else []
        text = Text("".join(parts), style="dim")
        text.append(f"{entry.topic} {who} {entry.message}", style=self._style(entry.topic))
        return text

    def render(self, entry: Entry) -> None:
        """Print one entry (the Renderer remembers raw blocks and the column header)."""
        if isinstance(entry, RawLine):
            if not self._in_raw_block:
                self._rule()
                self._in_raw_block = True
            # soft_wrap: the terminal, not rich, folds long raw lines, so copying them
            # out of the terminal gives back the original text.
            self.console.print(Text(entry.text), highlight=False, markup=False, soft_wrap=True)
            return
        if self._in_raw_block:
            self._rule()
            self._in_raw_block = False
        if self.columns is None:
            self.console.print(self._full_line(entry, with_time=True), highlight=False)
            return
        if not self._header_done:
            self._header()
            self._header_done = True
        if entry.peer is None or entry.peer >= self.columns or entry.topic == "TEST":
            # Tester events (and peers beyond the columns) are read across the whole row,
            # with their time, which dates the peer rows around them.
            self.console.print(self._full_line(entry, with_time=True), highlight=False)
            return
        cells: list[Text | str] = [""] * self.columns
        cells[entry.peer] = Text(f"{entry.topic} {entry.message}",
                                 style=self._style(entry.topic))
        grid = self._grid()
        grid.add_row(*cells)
        self.console.print(grid)

    def finish(self) -> None:
        """Close an open raw block so the last traceback is framed too."""
        if self._in_raw_block:
            self._rule()
            self._in_raw_block = False


def render_all(lines: Iterable[str], console: Console, *, columns: int | None = None,
               just: frozenset[str] | None = None, ignore: frozenset[str] = frozenset()) -> None:
    """Parse, filter and print ``lines``: the whole viewer as one importable call."""
    renderer = Renderer(console, columns)
    for entry in entries(lines, just, ignore):
        renderer.render(entry)
    renderer.finish()


SNIFF_BYTES = 8192
EXIT_NOT_A_LOG = 1


def looks_binary(head: bytes) -> bool:
    """Whether the first bytes of an input are binary data rather than a text log.

    A NUL byte never occurs in text; otherwise more than 10 % of characters that
    are not UTF-8 text or are control characters (other than tab, newline, CR, ESC
    for colours) means binary.  A log with a few odd bytes in a message is still text.
    """
    if not head:
        return False
    if b"\0" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    odd = sum(1 for ch in text
              if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\x1b\x0c"))
    return odd > len(text) / 10


def sniff(stream: BinaryIO) -> tuple[bytes, BinaryIO]:
    """Peek at the start of ``stream`` without losing it for the reader after us."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return peek(SNIFF_BYTES)[:SNIFF_BYTES], stream  # buffered: nothing consumed
    head = stream.read(SNIFF_BYTES)
    rest = io.BytesIO(head + stream.read())
    return head, rest


def _refuse(name: str, head: bytes) -> int | None:
    """The error for an input that is not a debug log, or None to go on."""
    if not head:
        print(f"raftlab logs: {name}: empty log", file=sys.stderr)
        return EXIT_NOT_A_LOG
    if looks_binary(head):
        print(f"raftlab logs: {name}: not a debug log (binary data)", file=sys.stderr)
        return EXIT_NOT_A_LOG
    return None


def _text_lines(stream: BinaryIO) -> TextIO:
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace")  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab logs",
        description="View a raftlab debug log: coloured topics, optional per-peer columns. "
        f"Topics: {', '.join(TOPICS)}.",
    )
    parser.add_argument("file", nargs="?", default="-",
                        help="log file to read; '-' or nothing reads standard input")
    parser.add_argument("-j", "--just", metavar="T1,T2",
                        help="show only these topics (comma-separated)")
    parser.add_argument("-i", "--ignore", metavar="T1,T2",
                        help="hide these topics (comma-separated)")
    parser.add_argument("-c", "--columns", type=int, metavar="N",
                        help="one column per peer S0..S<N-1>, sized to the terminal; "
                        "tester lines span all columns; times are dropped")
    parser.add_argument("--no-color", action="store_true", help="plain text, no colours")
    parser.add_argument("--color", action="store_true",
                        help="colour even when the output is not a terminal (e.g. | less -R)")
    parser.add_argument("-w", "--width", type=int, metavar="COLS",
                        help="page width in characters (default: the terminal's)")
    return parser


def main(argv: list[str] | None = None, stdin: TextIO | None = None,
         stdout: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        just = parse_topics(args.just) if args.just else None
        ignore = parse_topics(args.ignore) if args.ignore else frozenset()
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2
    if args.columns is not None and args.columns < 1:
        parser.error("--columns must be at least 1")
    if args.width is not None and args.width < 10:
        parser.error("--width must be at least 10")
    console = Console(
        file=stdout or sys.stdout,
        width=args.width,
        no_color=args.no_color,
        force_terminal=True if args.color and not args.no_color else None,
        color_system=None if args.no_color else "auto",
        highlight=False,
        soft_wrap=False,
    )
    try:
        if args.file == "-":
            source = stdin or sys.stdin
            buffer = getattr(source, "buffer", None)
            if buffer is not None:  # a real stream: sniff its bytes, then read it as text
                head, raw = sniff(buffer)
                refused = _refuse("standard input", head)
                if refused is not None:
                    return refused
                lines: Iterable[str] = _text_lines(raw)
            else:  # a text stream (StringIO): sniff its first line's text
                first = source.readline()
                refused = _refuse("standard input", first.encode("utf-8", "replace"))
                if refused is not None:
                    return refused
                lines = _chain(first, source)
            render_all(lines, console, columns=args.columns, just=just, ignore=ignore)
        else:
            try:
                with open(args.file, "rb") as fh:
                    head, raw = sniff(fh)
                    refused = _refuse(args.file, head)
                    if refused is not None:
                        return refused
                    render_all(_text_lines(raw), console, columns=args.columns, just=just,
                               ignore=ignore)
            except OSError as exc:
                print(f"raftlab logs: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
                return 1
    except BrokenPipeError:  # e.g. | head, or quitting less: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
    return 0


def _chain(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


if __name__ == "__main__":
    sys.exit(main())
