"""``raftlab grade``: score implementations with a rubric, every run isolated and limited.

:mod:`.command` is the command line; :mod:`.grader` grades one submission after
another; :mod:`.submission` finds and stages what a student handed in;
:mod:`.rubric` reads the points, runs and budgets (``rubrics/default.toml``);
:mod:`.isolation` runs a part's tests (always isolated in real time) under a
supervisor that limits them and sweeps every process they leave; :mod:`.sandbox`
holds the fences (a dedicated user per submission, a private view of the files,
resource limits); :mod:`.guard` is the tester-side plugin that starts the peers as
that user; :mod:`.score` turns per-run results into points; :mod:`.report`
writes them where people and tools read them.  Runs are planned and executed by
the stress runner's shared pieces (:mod:`tools.stress.planning`,
:mod:`tools.stress.backends`), never its command.
"""
