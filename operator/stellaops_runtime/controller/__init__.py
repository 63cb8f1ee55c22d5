"""The operator's pure core: posture, rendering, rollout folding and status conditions.

Every module here is a transform (DESIGN layer 2): plain functions over the
spec models in :mod:`stellaops_runtime.contracts.crds` that return plain dicts
(Kubernetes objects, status fragments). Nothing here talks to the API server;
the kopf handlers that do live with the runtime layer and call these.
"""
