"""Old name of :mod:`tools.grade.isolation`, kept so saved ``python -m tools.grade_isolation`` commands work."""  # noqa: E501
import runpy

globals().update(runpy.run_module("tools.grade.isolation", run_name=__name__))
