"""Signed runtime witnesses: in-toto Statements in DSSE envelopes, signed with Ed25519."""
