"""Old name of :mod:`tools.stress.pytest_plugin`, kept so saved ``-p tools.stress_plugin`` commands work."""  # noqa: E501
pytest_plugins = ["tools.stress.pytest_plugin"]
