"""An emulated Entra ID tenant: Graph, the token endpoint and one Key Vault over HTTPS.

The real SDKs talk to it unchanged; see ``docs/emulator.md``.
"""
