"""Tests of ``raftlab logs``: parsing, filtering and the (screenshot-free) column layout."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from raft.debuglog import TOPICS, format_line
from tools import logs
from tools.logs import LogLine, RawLine, parse_line, parse_topics, render_all

SAMPLE = """\
============================= test session starts ==============================
000000 TEST -- begin: initial election (2A), 3 peers
000012 TIMR S0 election timeout, start election in term 1 [bold]x[/bold]
000013 VOTE S1 granted vote to S0 in term 1
000013 VOTE S2 granted vote to S0 in term 1
000015 LEAD S0 became leader in term 1
000120 TEST -- disconnect(0)
Traceback (most recent call last):
AssertionError: expected one leader
000131 CMIT S2 commit index 3
"""


def render(text: str, width: int = 60, **kwargs) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, no_color=True, color_system=None,
                      force_terminal=False, highlight=False)
    render_all(io.StringIO(text), console, **kwargs)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_parse_round_trips_the_debuglog_format():
    line = format_line("VOTE", "S2", "granted vote to S0", 1234)
    assert parse_line(line + "\n") == LogLine(1234, "VOTE", 2, "granted vote to S0")
    assert parse_line(format_line("TEST", "--", "disconnect(1)", 7)) == LogLine(
        7, "TEST", None, "disconnect(1)")


@pytest.mark.parametrize("line", [
    "Traceback (most recent call last):",
    "000012 NOPE S0 unknown topic",
    "12 VOTE X1 bad peer",
    "FAILED labtests/test_2a.py::test_initial_election_2a - AssertionError",
    "",
])
def test_unparseable_lines_are_raw(line):
    assert parse_line(line) == RawLine(line)


def test_topic_lists_are_validated():
    assert parse_topics("vote, LEAD") == {"VOTE", "LEAD"}
    with pytest.raises(ValueError, match="FOO.*valid topics are TIMR"):
        parse_topics("VOTE,FOO")


def test_unknown_topic_exits_2_with_valid_list(capsys):
    with pytest.raises(SystemExit) as exc:
        logs.main(["--just", "VOTE,BOGUS", "-"], stdin=io.StringIO(""))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "BOGUS" in err and ", ".join(TOPICS) in err


def test_single_column_keeps_times_and_frames_raw_blocks():
    lines = render(SAMPLE, width=60)
    assert lines[0] == "#" * 60
    assert lines[1].startswith("=====")
    assert lines[2] == "#" * 60
    assert lines[3] == "000000 TEST -- begin: initial election (2A), 3 peers"
    # Markup-looking text in a message is shown literally.
    assert "000012 TIMR S0 election timeout, start election in term 1 [bold]x[/bold]" in \
        " ".join(lines)
    assert lines[1] == SAMPLE.splitlines()[0]  # raw lines verbatim, not folded
    i = lines.index("Traceback (most recent call last):")
    assert lines[i - 1] == "#" * 60 and lines[i + 1].startswith("AssertionError")
    assert lines[i + 2] == "#" * 60
    assert lines[-1] == "000131 CMIT S2 commit index 3"


def test_just_and_ignore_filter_parsed_lines_only():
    kept = render(SAMPLE, width=80, just=frozenset({"VOTE"}))
    assert [ln for ln in kept if ln[:6].isdigit()] == [
        "000013 VOTE S1 granted vote to S0 in term 1",
        "000013 VOTE S2 granted vote to S0 in term 1",
    ]
    assert "AssertionError: expected one leader" in kept  # raw lines always shown
    dropped = render(SAMPLE, width=80, ignore=frozenset({"TEST", "TIMR"}))
    assert not any(" TEST " in ln or " TIMR " in ln for ln in dropped)


def test_column_layout_puts_each_peer_in_its_own_column():
    width, n = 60, 3
    lines = render(SAMPLE, width=width, columns=n)
    header = next(ln for ln in lines if ln.startswith("S0"))
    col = [header.index(f"S{i}") for i in range(n)]
    assert col[0] == 0 and col[1] == pytest.approx(width / n, abs=2)
    assert col[2] == pytest.approx(2 * width / n, abs=2)

    def row_with(text: str) -> str:
        return next(ln for ln in lines if text in ln)

    s1 = [ln for ln in lines if "VOTE granted" in ln]
    assert [ln.index("VOTE") for ln in s1] == [col[1], col[2]]
    assert row_with("LEAD became leader").index("LEAD") == col[0]
    assert row_with("CMIT commit index 3").index("CMIT") == col[2]
    # Times are dropped in peer columns, kept on tester lines that span the page.
    lead = lines.index(row_with("LEAD became"))
    assert lines[lead:lead + 2] == ["LEAD became leader", "in term 1"]
    assert "000120 TEST -- disconnect(0)" in lines
    # A long peer message wraps inside its own column, never into a neighbour.
    timr = lines.index(row_with("TIMR election"))
    assert lines[timr:timr + 4] == [
        "TIMR election", "timeout, start", "election in term 1", "[bold]x[/bold]"]


def test_peer_outside_columns_spans_the_row():
    lines = render("000001 LOG1 S7 far away peer\n", width=50, columns=3)
    assert "000001 LOG1 S7 far away peer" in lines


def test_cli_reads_a_file_through_python_m(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(SAMPLE)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.logs", "--no-color", "-w", "70", "-c", "3", str(log)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CMIT commit index 3" in proc.stdout
    assert "\x1b[" not in proc.stdout
    missing = subprocess.run([sys.executable, "-m", "tools.logs", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def _logs_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tools.logs", "--no-color", *args],
                          input=stdin, capture_output=True, timeout=60)


def test_a_binary_file_is_not_a_debug_log(tmp_path):
    """Raw bytes are refused with a message and exit 1, never dumped to the terminal."""
    blob = tmp_path / "core.bin"
    blob.write_bytes(bytes(range(256)) * 40)  # NUL bytes and every control character
    for proc in (_logs_cli(str(blob)), _logs_cli("-", stdin=blob.read_bytes())):
        assert proc.returncode == 1
        assert b"not a debug log" in proc.stderr
        assert proc.stdout == b""
    no_nul = tmp_path / "noise.bin"
    no_nul.write_bytes(bytes(range(1, 32)) * 50 + b"\xff\xfe" * 400)  # no NUL, still binary
    proc = _logs_cli(str(no_nul))
    assert proc.returncode == 1 and b"not a debug log" in proc.stderr


def test_an_empty_input_is_an_empty_log(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    for proc in (_logs_cli(str(empty)), _logs_cli("-", stdin=b"")):
        assert proc.returncode == 1
        assert b"empty log" in proc.stderr and proc.stdout == b""
    with pytest.raises(SystemExit):  # a bad option is still a usage error first
        logs.main(["--columns", "0", "-"], stdin=io.StringIO(""))
    assert logs.main(["-"], stdin=io.StringIO(""), stdout=io.StringIO()) == 1


def test_a_log_with_a_few_odd_bytes_is_still_shown(tmp_path):
    log = tmp_path / "run.log"
    log.write_bytes(SAMPLE.encode() + b"000140 INFO S1 caf\xe9 latin-1 byte\n")
    proc = _logs_cli("-w", "80", str(log))
    assert proc.returncode == 0, proc.stderr
    assert b"CMIT S2 commit index 3" in proc.stdout and b"caf\xef\xbf\xbd latin-1" in proc.stdout
    piped = _logs_cli("-w", "80", "-", stdin=log.read_bytes())
    assert piped.returncode == 0 and piped.stdout == proc.stdout
    text = io.StringIO()
    assert logs.main(["--no-color", "-w", "80", "-"], stdin=io.StringIO(SAMPLE),
                     stdout=text) == 0
    assert "000013 VOTE S1 granted vote to S0 in term 1" in text.getvalue()
