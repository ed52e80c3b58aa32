"""`ttpscope serve`: the web app and REST API on Uvicorn, loopback by default."""

from __future__ import annotations

import typer

from ttpscope.cli.output import BundleOpt, DomainOpt, note

app = typer.Typer()

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@app.command("serve")
def serve(host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback exposes the "
                                   "server to the network: put it behind TLS."),
          port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
          token_file: str = typer.Option(None, "--token-file", help="File holding the write token (else one is "
                                         "generated at first start under TTPSCOPE_HOME and printed)."),
          domain: str = DomainOpt, bundle: str = BundleOpt,
          max_upload_mib: int = typer.Option(20, min=1, max=2048, help="Largest upload (whole request), MiB."),
          workers: int = typer.Option(1, min=1, max=8, help="Investigations run at once in the background."),
          rules: str = typer.Option(None, "--rules", help="Sigma rule file or folder for uploaded event logs "
                                    "(default: the cached SigmaHQ set of 'ttpscope rules update', if any)."),
          atomics: str = typer.Option(None, "--atomics", help="Atomic Red Team index folder or file: technique "
                                      "pages list its tests."),
          workspace: str = typer.Option(None, "--workspace", help="Workspace file to serve (default: "
                                        "TTPSCOPE_HOME/workspace.duckdb)."),
          cache_size: int = typer.Option(2048, min=0, help="Serialised knowledge-base answers kept in memory "
                                         "(0 = off)."),
          job_timeout: float = typer.Option(1800, min=0, help="Seconds one investigation may run before it is "
                                            "stopped (0 = no limit)."),
          job_memory_mib: int = typer.Option(4096, min=0, help="Address space one investigation's process may "
                                             "use, MiB (0 = no limit)."),
          sync_feeds_every: str = typer.Option(None, "--sync-feeds-every", help="Sync every feed of the workspace "
                                               "at start and then on this interval (e.g. 1h, 15m)."),
          ) -> None:
    """Serve the ATT&CK matrix explorer, case pages and the REST API (OpenAPI at /openapi.json)."""
    import uvicorn

    from ttpscope.api import Settings, create_app
    from ttpscope.api.security import default_token_file, load_or_create_token

    token, created = load_or_create_token(token_file)
    allowed = sorted(LOOPBACK) if host in LOOPBACK else None
    settings = Settings(token=token, domain=domain, bundle=bundle, max_upload_bytes=max_upload_mib * 1024 * 1024,
                        allowed_hosts=allowed, investigation_workers=workers,
                        view_cache_size=cache_size, rules=rules, workspace=workspace, atomics=atomics,
                        job_seconds=job_timeout or None, job_memory_mib=job_memory_mib or None)
    app = create_app(settings)
    scheduler = None
    if sync_feeds_every:
        from ttpscope.api.api_feeds import FeedScheduler
        from ttpscope.errors import InputError
        from ttpscope.feeds import parse_duration

        try:
            interval = parse_duration(sync_feeds_every)
        except ValueError as exc:
            raise InputError("--sync-feeds-every", sync_feeds_every, str(exc)) from None
        if interval is None or interval.total_seconds() < 1:
            raise InputError("--sync-feeds-every", sync_feeds_every, "the interval must be at least one second")
        scheduler = FeedScheduler(app, interval.total_seconds()).start()
    shown = f"[{host}]" if ":" in host else host
    # plain echo, not Rich: these lines are copied and parsed, so they must never be wrapped
    if created:
        typer.echo(f"write token (new, saved in {default_token_file()}): {token}")
    else:
        typer.echo(f"write token: from {token_file or default_token_file()}")
    typer.echo(f"ttpscope serving {app.state.kb.label} at http://{shown}:{port}/#token={token}")
    if host not in LOOPBACK:
        note(f"bound to {host}: reachable from the network; reads need no token")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        if scheduler is not None:
            scheduler.stop()
