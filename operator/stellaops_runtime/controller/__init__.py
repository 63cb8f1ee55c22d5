"""The operator: its pure core and the kopf runtime around it.

Transforms (DESIGN layer 2): ``posture``, ``render_policy``, ``render_agent``,
``rollout``, ``conditions``, ``naming``, ``policy_templates``, ``patches`` —
plain functions over the spec models in :mod:`stellaops_runtime.contracts.crds`
that return plain dicts (Kubernetes objects, status fragments, patches).

Runtime (layer 4): ``handlers`` (kopf watches and indexes), ``reconcile``,
``scheduler`` and ``settings``, which call the transforms and talk to the API
server through :mod:`stellaops_runtime.kube`.
"""
