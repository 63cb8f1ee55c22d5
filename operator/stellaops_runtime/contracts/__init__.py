"""Plain data shared by every stage: events, hot-symbol records, configuration."""
