"""`rotator demo`: the whole job, end to end, against an emulated tenant in under a minute.

It starts the emulated tenant in this process (with a few seconds of credential
propagation, as in Azure), writes a policy that manages a handful of apps whose
credentials are due, runs the service's own scheduler and engine until those are
rotated and their old credentials retired, shows each step as it happens, prints a
summary, and checks the invariants against the tenant and the vault. Any broken
invariant makes it exit 1.

- ``command.py``  the click command, which puts the parts below together
- ``scenario.py`` what the demo manages (the ``SCENARIO`` table) and its policy
- ``progress.py`` running the scheduler, printing each step as it happens
- ``summary.py``  the summary and the verdict

The invariants themselves are :mod:`rotator.emulator.invariants`, which the tests use
too.
"""

from rotator.cli.demo.command import demo_command

__all__ = ["demo_command"]
