"""The commands the README shows, as the tests that run them see them (one extractor).

A command is a line of a fenced ``bash`` block, without its trailing ``# comment``;
a line that is only a comment is not a command.  A line may chain commands with
``&&``: :func:`parts` splits it, and :func:`run_line` runs it the way a shell
would, with ``cd`` carried from one command to the next (a test runs each part
in its own subprocess, so that it can give each its own timeout and output).

Used by tests/test_workspace_readme.py (the "Your first hour" sections) and
tests/test_readme_commands.py (every other command), so both read the README
the same way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class Command:
    section: str   # the heading the command is under, e.g. "## Stress runs"
    line: str      # the command line, without its comment


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The body of the section under ``heading``, up to the next heading of its level or above."""
    level = heading.split(" ", 1)[0]
    start = text.index("\n" + heading + "\n") + len(heading) + 2
    stops = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", text[start:], re.M)]
    return text[start:start + stops[0]] if stops else text[start:]


def fenced(body: str, lang: str) -> list[str]:
    """The contents of the fenced blocks of language ``lang`` in ``body``, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", body, re.M | re.S)


def strip_comment(line: str) -> str:
    """``line`` without a shell comment: a ``#`` at a word start, outside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def block_commands(block: str) -> list[str]:
    """The command lines of one ``bash`` block (``\\`` continuations joined)."""
    joined = re.sub(r"\s*\\\n\s*", " ", block)
    return [c for c in (strip_comment(line) for line in joined.splitlines()) if c]


def commands(text: str | None = None) -> list[Command]:
    """Every command of every ``bash`` block of the README, in order, with its section."""
    text = readme_text() if text is None else text
    found: list[Command] = []
    heading = ""
    in_bash = in_other = False
    block: list[str] = []
    for line in text.splitlines():
        if in_bash or in_other:
            if line.startswith("```"):
                if in_bash:
                    found += [Command(heading, c) for c in block_commands("\n".join(block))]
                in_bash = in_other = False
                block = []
            elif in_bash:
                block.append(line)
        elif line.startswith("```bash"):
            in_bash = True
        elif line.startswith("```"):
            in_other = True
        elif re.match(r"#{1,6} ", line):
            heading = line
    return found


def section_commands(headings: tuple[str, ...]) -> list[str]:
    """The command lines of the sections ``headings``, in the order of ``headings``."""
    text = readme_text()
    return [c for heading in headings for block in fenced(section(text, heading), "bash")
            for c in block_commands(block)]


def parts(line: str) -> list[str]:
    """The commands a line chains with ``&&``."""
    return [p.strip() for p in line.split("&&")]


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def run_part(command: str, cwd: Path, env: dict[str, str],
             timeout: float) -> subprocess.CompletedProcess[str]:
    """Run one command in a shell, in a process group of its own, within ``timeout``.

    A command that outlives ``timeout``, or leaves a process of its group behind,
    fails the calling test with that said (and its group killed): a README command
    must end, and end clean.
    """
    proc = subprocess.Popen(command, shell=True, cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{command!r} did not end within {timeout} s (or left a process "
                             f"holding its output):\n{(out + err)[-4000:]}") from None
    left = group_members(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"{command!r} left processes {left} behind:\n{(out + err)[-4000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def run_line(line: str, cwd: Path, env: dict[str, str],
             timeout: float) -> tuple[Path, list[tuple[str, subprocess.CompletedProcess[str]]]]:
    """Run a command line in ``cwd``: each ``&&`` part by :func:`run_part`, ``cd`` moving ``cwd``.

    Stops at the first part that fails, as ``&&`` does.  Returns the folder the line
    ends in and each part run with its result (output captured, ``timeout`` each).
    """
    results = []
    for part in parts(line):
        if part.startswith("cd "):
            cwd = cwd / part[3:].strip()
            continue
        res = run_part(part, cwd, env, timeout)
        results.append((part, res))
        if res.returncode != 0:
            break
    return cwd, results
