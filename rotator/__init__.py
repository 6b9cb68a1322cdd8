"""rotator: keeps Entra ID app registration credentials from ever expiring in production."""

__version__ = "0.1.0"
