"""Exit codes every subcommand uses, so scripts can rely on them."""

OK = 0  # success; for `query observed`: the function was observed
NOT_FOUND = 1  # the question was answered with "no" (not observed while under observation, ...)
ERROR = 2  # bad usage (e.g. a malformed digest or purl), bad config, unreachable store or server
UNKNOWN = 3  # `query`: no evidence either way (image never observed, or only at Passive posture)
INTERRUPTED = 130
