"""Trent: a self-hosted, AWS-KMS-compatible multi-region key cluster.

Everything lives under this one package so that installing Trent into a project never shadows
that project's own top-level modules (a `node`, `cluster` or `bench` of its own)."""
