"""The KMS service model as Trent's request decoder enforces it, for XKS: AWS requires a proxy on port 443 behind
https:// (XksProxyUriEndpoint's pattern has no port); on one machine a proxy listens on a port of its own, and
`xks_allow_http` may allow http://. The handler then checks the scheme (node/xks/stores.check_endpoint)."""

from __future__ import annotations

import copy
from typing import Any

from botocore.model import ServiceModel

ENDPOINT_PATTERN = "^https?://[a-zA-Z0-9.-]+(:[0-9]{1,5})?$"


def kms_model(service_data: dict[str, Any]) -> ServiceModel:
    data = copy.deepcopy(service_data)
    data["shapes"]["XksProxyUriEndpointType"]["pattern"] = ENDPOINT_PATTERN
    return ServiceModel(data, service_name="kms")
