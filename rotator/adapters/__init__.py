"""Implementations of the ports against the real world: Graph, Key Vault, Entra, SQL."""
