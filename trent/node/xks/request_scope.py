"""The KMS request being served, for the requestMetadata KMS sends a proxy (principal ARN, operation, request id):
set by the endpoint just before an operation's handler runs, read by the XKS calls it makes."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# A node.ops.registry.RequestContext (typed loosely: node/ops imports this module's users).
current_request: ContextVar[Any] = ContextVar("current_kms_request", default=None)
