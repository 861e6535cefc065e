"""Old name of :mod:`tools.stress.pytest_plugin`, kept so saved ``-p tools.stress_plugin`` commands work."""  # noqa: E501
from tools.stress.pytest_plugin import *  # noqa: F401,F403
