"""disentbench's built-in plugins. They register through the ``disentbench`` entry-point group,
exactly as a third-party package does (see ``pyproject.toml``)."""
