"""``raftlab test`` runs pytest in a child process and follows its events.

Why a child: a Raft under test runs inside the test process and can end it
(``os._exit(0)``, a signal, a crash of the interpreter) or keep it alive; only
a process outside can always say what happened.  The child writes one event
per line (:mod:`tools.test_run.events`: header, collected tests, test started,
report, finish) to a file; the parent (:mod:`tools.test_run.follow`) reads them
as they come, prints the lab's lines (:mod:`tools.test_run.display`), and when
the child ends without finishing, reports the test that was running as failed
(naming the exit status or signal) and the tests after it as not run.
"""
