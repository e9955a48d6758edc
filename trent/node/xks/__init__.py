"""External key stores (XKS): the AWS KMS External Keystore Proxy API, both sides of it.

``wire`` and ``signing`` are the API itself (shapes, limits, errors, SigV4 with service ``kms-xks-proxy``); the proxy
(``proxy_*``) serves it from keys in a PKCS#11 token; the KMS side (``client``, ``stores``) calls any proxy that
speaks it, as AWS KMS does.
"""
