"""The node agent: sources -> pipeline -> hot-symbol store, with metrics and health."""
