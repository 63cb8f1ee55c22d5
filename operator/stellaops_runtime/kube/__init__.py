"""Kubernetes API access shared by the operator and the agent (an edge: sockets and credentials)."""
