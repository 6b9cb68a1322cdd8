"""Helpers the test directories share. No test imports a conftest or another test
module: what several places need lives here, and a conftest that offers one of these
fixtures imports it from here.

- ``tools.py``      system tools a test needs (fails with the install command)
- ``paths.py``      where the repository is
- ``fakes.py``      in-memory Graph, Key Vault, token endpoint and clock
- ``world.py``      the engine tests' world over those fakes (fixture ``world``)
- ``invariants.py`` the invariant checks over the fakes and the emulated tenant
- ``databases.py``  throwaway PostgreSQL databases, store fixtures, leak greps
- ``records.py``    rotation and inventory records to store
- ``emulated.py``   the emulated tenant and ``rotator`` as a process (integration, crash matrix)
- ``serve.py``      ``rotator serve`` as a process (service tests, benchmarks)
- ``receivers.py``  loopback webhook and SMTP servers for alert channels
- ``deploy.py``     the deployment files
- ``certs.py``      self-signed certificates, and emulated apps holding certificates
- ``inventory.py``  the emulated tenant's inventory read in process (metrics at scale)
- ``consumer.py``   a consumer of a rotated secret as a process
- ``api.py``        callers of rotator's API: real tokens via azure-identity, and forgeries

A directory's own helpers sit beside its tests (``tests/emulator/helpers.py``,
``tests/integration/crafted_graph.py``, ``tests/alerts/helpers.py``); the campaign's
modules are a program of their own (``python -m tests.campaign.run``).
"""
