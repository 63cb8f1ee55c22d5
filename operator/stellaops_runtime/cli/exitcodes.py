"""Exit codes every subcommand uses, so scripts can rely on them."""

OK = 0  # success; for `query observed`: the function was observed
NOT_FOUND = 1  # the question was answered with "no" (not observed, some input unresolved)
ERROR = 2  # bad usage, bad config, unreachable store or server
INTERRUPTED = 130
