"""Frame canonicalizer: build-ids, symbolization, demangling and function IDs for stack frames."""
