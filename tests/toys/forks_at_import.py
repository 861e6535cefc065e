"""Broken toy: the bundled Raft, but importing this module forks the importing process.

The copy ran on: in-process it ran the whole session beside the real one, and under
``raftlab test -- -n 2`` each xdist worker's copy reported the same tests to the
controller, which ended in ``INTERNALERROR ... list.remove(x): x not in list`` (exit
status 3, one test of three reported).  In isolated mode the copy is a second
template reading the tester's control socket.  The harness must end the copy at once
and every test must say so in a warning.  ``RAFTLAB_TOY_MARKERS``, when set, is a
folder where a copy that runs on leaves a file.
"""

import os

from raft import make  # noqa: F401 - the lab's API, the bundled Raft's

if os.fork() == 0:  # the copy
    markers = os.environ.get("RAFTLAB_TOY_MARKERS")
    if markers:
        with open(os.path.join(markers, f"copy-{os.getpid()}"), "w") as f:
            f.write("the copy ran on\n")
