"""Security: the identity key files (``keystore``, ``keyfile``), fleet certificates (``certs``) and the
trust policy (``trust``).
"""
