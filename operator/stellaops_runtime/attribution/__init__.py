"""Package attribution: which package (PURL) a file or a function in an image belongs to.

The agent counts functions per (image digest, file); this package answers the
"of package P" half of "is function F of package P in image I executed?".
Sources are tried in a fixed order (SBOM, OS package databases, language
ecosystems; docs/attribution.md explains why). Parsers of the on-disk formats
are pure modules; the modules that read a root filesystem are edges; the
:class:`~stellaops_runtime.attribution.attributor.Attributor` ties them
together with the per-image caches the agent's hot path needs.
"""
