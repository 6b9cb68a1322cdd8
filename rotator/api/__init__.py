"""The HTTPS API (``/api/v1``) for pipelines and security tools.

- ``service``: what the API does, over the engine and store functions the CLI uses
- ``http``: the Starlette routes, bearer-token authentication and app-role checks
- ``views``: JSON shapes; ``openapi``: the OpenAPI document

Token validation is a port (``rotator.ports.AccessTokenValidator``); the Entra adapter
is ``rotator.adapters.entra_tokens``, wired in by ``rotator.bootstrap``.
"""
