"""Wire contracts: Python code generated from our own .proto subsets in ``protos/``.

Kept apart from the code that uses it (as Tetragon keeps ``api/v1`` apart from
``pkg/``), so a change of the wire contract is one reviewable diff:
``protos/*.proto`` plus what ``python -m stellaops_runtime.wire.generate`` emits.
"""
