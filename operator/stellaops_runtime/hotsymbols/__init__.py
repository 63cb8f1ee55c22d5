"""Hot-symbol bridge: events -> windowed per-function counts for the store."""
