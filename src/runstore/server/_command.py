"""The ``runstore server`` command (registered by the CLI; nothing of Flight is
imported until it runs)."""

from __future__ import annotations

from pathlib import Path

import click

from . import DEFAULT_PORT

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command(name="server", short_help="Serve the repository to remote runs over Arrow Flight.",
               context_settings=CONTEXT)
@click.option("--repo", "repo_path", metavar="PATH", default=None,
              help="Repository directory (the same as runstore --repo); created when missing.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (anything but loopback needs a token file).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free port, printed at start).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File holding the token clients must send (RUNSTORE_TOKEN on their side).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM certificate: serve grpc+tls:// (with --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM private key of --tls-cert.")
@click.pass_context
def server(ctx: click.Context, repo_path: str | None, host: str, port: int, token_file: str | None,
           tls_cert: str | None, tls_key: str | None) -> None:
    """Serve a repository to runs on other hosts: Run(repo="grpc://HOST:PORT").

    Writes from every client are committed together (one transaction per commit);
    queries run here and travel as Arrow. Stop with Ctrl-C or SIGTERM: what was
    acknowledged is on disk.
    """
    from runstore import Repo
    from runstore.errors import RepositoryError

    from .app import serve

    token = None
    if token_file is not None:
        token = Path(token_file).read_text().strip()
        if not token:
            raise RepositoryError(f"the token file {token_file} is empty; put a long random string in it")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    tls = (Path(tls_cert).read_bytes(), Path(tls_key).read_bytes()) if tls_cert and tls_key else None
    path = repo_path if repo_path is not None else getattr(ctx.obj, "repo_path", None)
    repo = Repo(path)
    serve(repo, host, port, token=token, tls=tls, echo=lambda line: click.echo(line))
