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
@click.option("--ui", "with_ui", is_flag=True, help="Also serve the web UI (runstore ui) from this process.")
@click.option("--ui-port", default=43800, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the web UI with --ui.")
@click.pass_context
def server(ctx: click.Context, repo_path: str | None, host: str, port: int, token_file: str | None,
           tls_cert: str | None, tls_key: str | None, with_ui: bool, ui_port: int) -> None:
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
    serve(repo, host, port, token=token, tls=tls, echo=lambda line: _echo(line),
          ui_port=ui_port if with_ui else None)


@click.command(name="sync", short_help="Send spooled data (written while a server was away) to it.",
               context_settings=CONTEXT)
@click.option("--server", "url", metavar="URL", default=None,
              help="Server address (grpc://HOST:PORT) [default: the one each spool was written for].")
@click.option("--spool", "spool_dir", metavar="DIR", type=click.Path(file_okay=False), default=None,
              help="Spool directory [default: every spool under ~/.cache/runstore/spool/].")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File holding the server's token [default: $RUNSTORE_TOKEN].")
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM certificate to trust for grpc+tls:// (a self-signed server's).")
def sync(url: str | None, spool_dir: str | None, token_file: str | None, tls_ca: str | None) -> None:
    """Send what runs spooled while the server could not be reached (a node with no
    network during the job, a server that was down when a run ended).

    Each op is applied once however often it is sent, so running sync while the
    writing process is still alive is safe. Exit code 1 when something is left.
    """
    from runstore.errors import RepositoryError

    from . import _protocol as P
    from ._link import Link, TokenRefused, Unreachable
    from ._spool import pending, push

    token = Path(token_file).read_text().strip() if token_file else None
    ca = Path(tls_ca).read_bytes() if tls_ca else None
    if spool_dir is not None:
        dirs = [Path(spool_dir)]
    elif url is not None:
        dirs = [Path(P.default_spool_root()) / P.Address(url).spool_name]
    else:
        root = Path(P.default_spool_root())
        dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    left = 0
    for directory in dirs:
        if not pending(directory):
            _echo(f"{directory}: nothing to send")
            continue
        target = url
        if target is None:
            marker = directory / "server.txt"
            if not marker.exists():
                raise RepositoryError(f"{directory} does not say which server it is for; pass --server URL")
            target = marker.read_text().strip()
        link = Link(P.Address(target), P.read_token(token), ca)
        try:
            report = push(link, directory)
        except TokenRefused as exc:
            raise RepositoryError(f"{target}: {exc}") from None
        except Unreachable as exc:
            raise RepositoryError(f"the server {target} cannot be reached ({exc}); the spool is kept") from None
        finally:
            link.close()
        already = f"; {report['already']} were there already" if report["already"] else ""
        _echo(f"{directory}: sent {report['ops']} op(s) ({report['points']:,} points) of "
                   f"{report['runs']} run(s) to {target}{already}")
        for error in report["errors"]:
            _echo(f"problem: {error}", err=True)
        left += report["left"]
    if left:
        _echo(f"{left} op(s) left in the spool (see the problems above)", err=True)
        raise SystemExit(1)


@click.command(name="merge", short_help="Merge repositories written on different hosts into one.",
               context_settings=CONTEXT)
@click.argument("sources", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--into", "dest", metavar="DEST", required=True, type=click.Path(file_okay=False),
              help="The repository to merge into (created when missing).")
def merge(sources: tuple[str, ...], dest: str) -> None:
    """Copy every run of SOURCES that DEST lacks: record, params, points, artifacts.

    For clusters without a reachable server: each host writes its own repository,
    merged afterwards. A run already in DEST with the same contents is skipped; one
    with different contents is reported and DEST's copy kept (exit code 1).
    """
    from .merge import describe
    from .merge import merge as merge_repositories

    report = merge_repositories(list(sources), dest)
    for line in describe(report, dest):
        _echo(line)
    for conflict in report.conflicts:
        _echo(f"conflict: {conflict}", err=True)
    if report.conflicts:
        raise SystemExit(1)


def _echo(message: str, err: bool = False) -> None:
    """click.echo with control characters in run names escaped (docs/cli.md)."""
    from ..analysis.format import safe_lines

    click.echo(safe_lines(message), err=err)
