"""``raftlab stress``: run graded tests hundreds of times, each run with its own seed.

:mod:`.command` parses the command line and drives a run; :mod:`.planning`
plans one job per run; :mod:`.backends` runs the jobs (locally in warm
forked workers, or pytest-xdist with ``RAFTLAB_STRESS_XDIST=1``, or on a Dask
cluster) through :mod:`.pytest_plugin`; :mod:`.reruns` decides which
inconclusive runs to run again and on how many workers; :mod:`.termination`
makes SIGTERM and SIGHUP stop a run like Ctrl-C;
:mod:`.run` accounts each result into :mod:`.stats`, :mod:`.results` (the
output folder) and :mod:`.display` (live bars and the final table).  Failures
are grouped by :mod:`.signatures` in :mod:`.groups`, which caps the failure
bundles kept; :mod:`.bundles` packs a run's bundle where it ran and unpacks it
into the output folder.

``raftlab grade`` reuses :mod:`.planning`, :mod:`.backends`, :mod:`.reruns`,
:mod:`.termination` and the grouping and bundles (never the command module).
"""
