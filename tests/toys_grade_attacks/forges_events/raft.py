"""Attack toy: never elects; finds the grader's events file from the command lines of
its ancestors (``--stress-jobs FILE`` names a jobs file that names the events file;
only ancestors, so that it never touches unrelated runs on the machine) and appends
a "passed" line for every job, at import and again from a peer."""

import json
import os
import sys
import threading

NAME = "forges_events"


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


def _ancestors():
    pid = os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                pid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            return
        yield pid


def _jobs_files():
    seen = set()
    for pid in _ancestors():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(args):
            path = None
            if arg == "--stress-jobs" and i + 1 < len(args):
                path = args[i + 1]
            elif arg.startswith("--stress-jobs="):
                path = arg.split("=", 1)[1]
            if path and path not in seen:
                seen.add(path)
                yield path


def _attack(where):
    forged, errors = 0, []
    for path in _jobs_files():
        try:
            with open(path, encoding="utf-8") as fh:
                spec = json.load(fh)
            with open(spec["events"], "a", encoding="utf-8") as out:
                for job in spec["jobs"]:
                    out.write(json.dumps({
                        "job": job["index"], "test": job["test"], "seed": job["seed"],
                        "outcome": "passed", "duration": 1.0, "worker": "gw0",
                        "loadavg": [], "message": None}) + "\n")
                    forged += 1
        except (OSError, ValueError, KeyError) as exc:
            errors.append(f"{path}: {exc}")
    say(f"{where}: forged {forged} passed event(s); errors: {errors}")


_attack("import")


def make(peers, me, persister, apply_ch):
    if me == 0:
        threading.Thread(target=_attack, args=("peer",), daemon=True).start()
    return Raft(peers, me, persister, apply_ch)
