"""The ``runstore ui`` command (registered by the CLI; defined here so the CLI stays thin and
nothing of the UI is imported until the command runs)."""

from __future__ import annotations

import click

from . import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV


@click.command(name="ui", short_help="Serve a web UI over the repository (runs, curves, compare).",
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--repo", "repo_path", metavar="PATH", default=None,
              help="Repository directory (the same as runstore --repo).")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to bind. Anything but loopback requires a token (one is generated when none is given).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar=TOKEN_ENV, show_envvar=True, default=None,
              help="Access token: sent as 'Authorization: Bearer ...' or opened once as ?token=...")
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a web browser.")
@click.pass_context
def ui(ctx: click.Context, repo_path: str | None, host: str, port: int, token: str | None, open_browser: bool) -> None:
    """Serve a web UI over the repository (read-mostly: names, descriptions, tags and archive
    are editable). Needs the extra: pip install 'runstore[ui]'."""
    from runstore import Repo

    from . import serve

    if repo_path is not None:
        repo = Repo(repo_path, create=False)
    else:
        # the group's state opens --repo / $RUNSTORE_REPO / ./.runstore without creating it
        repo = ctx.obj.repo() if hasattr(ctx.obj, "repo") else Repo(create=False)
    serve(repo, host=host, port=port, token=token, open_browser=open_browser, echo=click.echo)
