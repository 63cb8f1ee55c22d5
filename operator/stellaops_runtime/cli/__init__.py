"""The ``stella-runtime`` command line: one entry point, one module per subcommand."""
