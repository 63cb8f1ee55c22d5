"""StellaOps Runtime: prove, function by function, what runs in Kubernetes containers.

The package follows the flow of one event (docs/architecture.md): sources ->
adapter -> privacy -> hotsymbols -> store, with contracts (plain data) at the
bottom and the agent/CLI wiring on top.
"""

__version__ = "0.1.0"
