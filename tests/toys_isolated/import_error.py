"""Isolation toy: fails at import (reported once by the template, then by every test)."""

raise RuntimeError("toy import failure")
