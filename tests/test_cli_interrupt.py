"""A stop that reaches ``raftlab`` before a command has taken over stopping.

Each command turns Ctrl-C into an orderly stop once it runs, but loading it takes
up to half a second (pytest, rich, dask): a Ctrl-C then used to end in a
KeyboardInterrupt traceback.  The dispatcher now answers it with one line and the
shell's status for the signal.  The signal is sent from inside the child at a known
point (while a module is being imported, or from the command's own code), so each
case is exact on any load.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_ctrl_c_while_the_test_command_loads_is_one_line_and_status_130() -> None:
    """The real ``raftlab test``: SIGINT arrives while it imports the harness's options."""
    res = _run("""
        import os, signal, sys, time

        class InterruptOnOptions:
            # A finder asked for the harness's options (the test command imports them):
            # the process gets a Ctrl-C right there, in the middle of the command's import.
            def find_spec(self, name, path=None, target=None):
                if name == "labtests.options":
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)  # the signal's handler raises during this sleep
                return None

        sys.meta_path.insert(0, InterruptOnOptions())
        from tools.cli import main
        sys.exit(main(["test", "2A"]))
    """)
    assert res.returncode == 130, (res.returncode, res.stdout, res.stderr)
    assert res.stderr == "raftlab test: interrupted before it finished starting\n", res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_an_interruption_a_command_lets_through_is_named_with_its_signal(tmp_path: Path) -> None:
    """Ctrl-C or a stop signal a command's own code did not handle: its status, no traceback."""
    (tmp_path / "leaky_command.py").write_text(textwrap.dedent("""
        from tools.termination import Terminated

        def main(argv):
            if argv == ["term"]:
                raise Terminated(15)  # what stop_signals_as_interrupts raises on SIGTERM
            raise KeyboardInterrupt
    """))
    for argv, status, words in ((["int"], 130, "interrupted"),
                                (["term"], 143, "terminated by SIGTERM")):
        res = _run(f"""
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            from tools import cli
            cli.SUBCOMMANDS["leaky"] = ("leaky_command", "a command that lets a stop through")
            sys.exit(cli.main(["leaky", *{argv!r}]))
        """)
        assert res.returncode == status, (argv, res.returncode, res.stderr)
        assert res.stderr == f"raftlab leaky: {words}\n", res.stderr
        assert "Traceback" not in res.stdout + res.stderr
