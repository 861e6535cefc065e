"""pytest plugin of the raftlab harness (options, seeds, output). Being written."""
