"""The mutants of the bundled Raft: each is the reference with exactly one bug.

Only the edits are kept here (:data:`MUTANTS`, :data:`EXTRA`), not copies of the
Raft: a mutant is rendered from ``raft/reference/{raft,rules,log}.py`` as it is
now (imports made relative, so the package is self-contained) plus its one edit,
and :func:`materialize` writes it as a package into a temporary directory for
the tests and the kill-matrix benchmark.  So a mutant never tests an old
reference, and an edit whose anchor text is missing fails loudly instead of
producing a mutant that is secretly the reference.

``python tests/mutants/make_mutants.py [--out DIR] [NAME ...]`` writes mutants
(default: all, into the temp directory) and prints where, e.g. to hand one to
``raftlab explore --impl``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(ROOT, "raft", "reference")
FILES = ("raft.py", "rules.py", "log.py")
IMPORTS = [  # (old, new): the package's own modules become relative imports, sorted last
    ("import raft.reference.rules as rules\n", ""),
    ("from raft.reference.log import Entry, RaftLog, decode_state",
     "\nfrom . import rules\nfrom .log import Entry, RaftLog, decode_state"),
    ("from raft.reference.log import Entry, RaftLog\n", "from .log import Entry, RaftLog\n"),
]

# name -> (bug class, file, old text, new text)
MUTANTS: dict[str, tuple[str, str, str, str]] = {
    "no_persist_vote": (
        "votedFor is not persisted (a restarted peer can vote twice in one term)",
        "raft.py",
        "state = encode_state(self.term, self.voted_for, self.log)",
        "state = encode_state(self.term, rules.NO_VOTE, self.log)  # MUTANT: votedFor lost",
    ),
    "commit_old_terms": (
        "entries of earlier terms are committed by counting replicas (no Figure-8 rule)",
        "rules.py",
        "if candidate > commit_index and log.term_at(candidate) == current_term:",
        "if candidate > commit_index:  # MUTANT: any term's entry commits by count",
    ),
    "stale_ae_timer": (
        "the election timer is reset by AppendEntries from a stale term",
        "raft.py",
        "            if self._dead.is_set() or args.term < self.term:\n"
        "                return AppendEntriesReply(self.term, False)",
        "            if self._dead.is_set() or args.term < self.term:\n"
        "                if not self._dead.is_set():\n"
        "                    self._reset_election_timer()  # MUTANT: a stale leader resets it\n"
        "                return AppendEntriesReply(self.term, False)",
    ),
    "vote_no_timer": (
        "granting a vote does not reset the election timer",
        "raft.py",
        "                    self.voted_for = args.cand\n"
        "                    self._reset_election_timer()",
        "                    self.voted_for = args.cand  # MUTANT: timer not reset on a vote",
    ),
    "stale_replies": (
        "replies to RPCs sent in an earlier term are acted on",
        "raft.py",
        "        return self.role == LEADER and self.term == sent_term",
        "        return self.role == LEADER  # MUTANT: the reply may be from an earlier term",
    ),
    "ignore_reply_term": (
        "a leader ignores a higher term in replies",
        "raft.py",
        "        if self._observe_term(reply.term):\n"
        "            self._persist()\n"
        "            return False\n"
        "        return self.role == LEADER and self.term == sent_term",
        "        # MUTANT: a higher term in the reply is ignored\n"
        "        return self.role == LEADER and self.term == sent_term",
    ),
}

# A second edit for mutants whose bug shows in two places of the shell.
EXTRA: dict[str, tuple[str, str, str]] = {
    "stale_replies": (
        "raft.py",
        "if self.role != CANDIDATE or self.term != args.term or not reply.granted:",
        "if self.role != CANDIDATE or not reply.granted:  # MUTANT: votes of earlier terms",
    ),
    "ignore_reply_term": (
        "raft.py",
        "            if self._observe_term(reply.term):\n"
        "                self._persist()\n"
        "                return\n"
        "            if self.role != CANDIDATE",
        "            # MUTANT: a higher term in a vote reply is ignored\n"
        "            if self.role != CANDIDATE",
    ),
}


def _edit(text: str, old: str, new: str, where: str) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"{where}: anchor found {text.count(old)} times, expected once:\n{old}")
    return text.replace(old, new)


def render(name: str) -> dict[str, str]:
    """The files of mutant ``name`` (file name -> text), made from the reference as it is now."""
    bug, target, old, new = MUTANTS[name]
    files: dict[str, str] = {}
    for fname in FILES:
        with open(os.path.join(REFERENCE, fname)) as f:
            text = f.read()
        for a, b in IMPORTS:
            text = text.replace(a, b)
        if fname == target:
            text = _edit(text, old, new, f"{name}/{fname}")
        if name in EXTRA and EXTRA[name][0] == fname:
            text = _edit(text, EXTRA[name][1], EXTRA[name][2], f"{name}/{fname} (extra)")
        files[fname] = text
    files["__init__.py"] = (
        f'"""Mutant of the reference Raft.\n\nBug: {bug}.\n'
        f'Generated by tests/mutants/make_mutants.py; see MUTANTS there for the edit.\n'
        f'"""\n\nfrom .raft import Raft, make\n\n__all__ = ["Raft", "make"]\n')
    return files


def materialize(name: str, base: str | None = None) -> str:
    """Write mutant ``name`` as a package under ``base`` (default: the temp dir); its path.

    The directory is named by a hash of the rendered files, so every process that
    asks for the same mutant of the same reference gets the same, complete package
    (written to a scratch directory and renamed into place), and a changed
    reference gives a new one.
    """
    files = render(name)
    digest = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()[:12]
    root = base or os.path.join(tempfile.gettempdir(), f"raftlab-mutants-{os.getuid()}")
    out = os.path.join(root, digest, name)
    if os.path.isdir(out):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(out))
    for fname, text in files.items():
        with open(os.path.join(scratch, fname), "w") as f:
            f.write(text)
    try:
        os.rename(scratch, out)
    except OSError:  # another process got there first: its copy is the same
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def main(argv: list[str]) -> int:
    out = None
    if argv[:1] == ["--out"]:
        if len(argv) < 2:
            raise SystemExit("--out needs a directory")
        out, argv = argv[1], argv[2:]
    unknown = [n for n in argv if n not in MUTANTS]
    if unknown:
        raise SystemExit(f"no mutant {', '.join(unknown)}; known: {', '.join(MUTANTS)}")
    for name in argv or list(MUTANTS):
        print(f"{materialize(name, out)}  # {MUTANTS[name][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
