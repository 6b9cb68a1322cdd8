"""Helpers shared by the test directories (no test imports another directory's conftest)."""
