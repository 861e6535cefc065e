"""``raftlab explore``: randomized fault schedules in simulated time, against one Raft.

A thin command over :mod:`labtests.explore`: :mod:`tools.explore.work` is what a
worker process does (run one schedule, shrink one failure), :mod:`tools.explore.display`
the live progress and the summary, :mod:`tools.explore.command` the options and
the loop that keeps the workers busy until the schedule count or time budget is spent.
"""
