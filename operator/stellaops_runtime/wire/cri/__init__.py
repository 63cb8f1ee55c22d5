"""Generated messages for our subset of the Kubernetes CRI (``runtime.v1``).

``api_pb2`` holds the request/response messages of the runtime and image
services the CRI lifecycle observer calls (lists, statuses, the
``GetContainerEvents`` stream) and those the tests use to drive a real CRI
server (RunPodSandbox, CreateContainer ...). Never edit ``api_pb2*`` by hand:
change ``protos/cri/api.proto`` and run
``python -m stellaops_runtime.wire.cri.generate``.
"""
