"""`rotator serve`: the long-running service (scheduler, health and metrics endpoint)."""

from __future__ import annotations

import click

from rotator.cli.app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliApp


@click.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True,  # noqa: S104 - scraped from outside
              help="Address of the health and metrics endpoint.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port of the health and metrics endpoint (default ROTATOR_HTTP_PORT, 9464; "
                   "0 takes any free port, named in the start-up log line).")
def serve_command(host: str, port: int | None) -> None:
    """Run the service: scan, rotate when due, serve /healthz, /readyz and /metrics
    (and /api/v1 when the policy file has an [api] table)."""
    import asyncio

    from rotator.bootstrap import engine_deps, token_validator
    from rotator.config import ConfigError
    from rotator.daemon import serve
    from rotator.logs import configure

    cli = CliApp()
    loaded = cli.loaded()
    settings = loaded.settings
    configure(settings.log_format, settings.log_level)
    store = cli.store()
    http_port = settings.http_port if port is None else port
    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = (str(settings.tls_cert_file), str(settings.tls_key_file))

    async def go() -> None:
        async with engine_deps(loaded, store) as deps:
            await serve(deps, http_host=host, http_port=http_port,
                        token_validator=token_validator(loaded), tls=tls)

    try:
        asyncio.run(go())
    except ConfigError as exc:
        cli.abort(str(exc), EXIT_USAGE)
    except OSError as exc:
        cli.abort(f"cannot serve on {host}:{http_port}: {exc.strerror or exc}", EXIT_FAILED)
    finally:
        store.close()
    raise SystemExit(EXIT_OK)
