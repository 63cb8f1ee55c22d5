"""Event sources: Tetragon gRPC, Tetragon JSON export, and Tetragon's own metrics."""
