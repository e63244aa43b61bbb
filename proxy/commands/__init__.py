"""Sub-commands of the ``hallgate`` CLI that need an upstream (so they live in proxy/)."""
