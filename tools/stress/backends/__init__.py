"""Where stress and grade runs execute.

:mod:`.base` is the interface (Job, RunOptions, RunResult, Backend,
BackendError) and imports no backend; :mod:`.pytest_runs` is how a backend
drives pytest with the stress plugin; :mod:`.xdist` runs jobs locally (in
workers forked by :mod:`.forked`, or with pytest-xdist);
:mod:`.dask_client` and :mod:`.dask_worker` are the two sides of the Dask
cluster backend; :mod:`.factory` picks one by name.
"""
