"""The container lifecycle observer (the seed's Zastava): runtime events and a cgroup registry.

``base`` holds what every runtime shares (registry, counters, the reconnect
loop); ``observer`` is containerd's (over ``containerd_client``, with
``decode`` turning its envelopes and specs into facts without ever raising
and ``records`` building registry records from them), ``docker_observer``
the Docker Engine's (over ``docker_client``). ``registry`` keeps cgroup id ->
container -> image digest and pod, ``cgroups`` finds a pid's cgroup v2 id,
``metrics`` exposes the counters, ``lookup`` is the immutable registry
snapshot the agent's pipeline reads (agent/lifecycle_part.py). See docs/lifecycle.md.
"""
