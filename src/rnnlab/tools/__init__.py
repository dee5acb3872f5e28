"""Checks of the package itself that anyone can run (``python -m rnnlab.tools.deps``)."""
