"""``raftlab timeline RUN``: (re)write the HTML timeline of a failure bundle or an events file."""
