"""Suite-wide settings.

Hypothesis runs derandomised here, so the suite is a gate that gives the same answer
on every run; new inputs are explored on purpose with
``pytest --hypothesis-profile=explore`` (and the fault campaign's own ``--seed``).
Every failure such a run finds is kept as an ``@example``.
"""

from hypothesis import settings

settings.register_profile("gate", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("gate")
