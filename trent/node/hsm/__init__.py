"""PKCS#11 tokens (SoftHSM2 by default) and the pool of logged-in sessions every call to one goes through.

Kept free of KMS: CloudHSM key stores use it (node/keystores), and so can anything else that keeps keys in a token.
"""
