"""``runstore import tensorboard|mlflow|aim``: bring runs from another tracker.

Thin: each command parses its arguments, calls one function of
:mod:`runstore.importers` with a progress bar on stderr, and prints the
import's summary (runs, points, what was skipped and why) on stdout.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from . import table as T

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _repo(repo_path: str | None) -> str | None:
    from . import _state

    # The importer opens it after the source was read: a mistyped source makes no
    # repository. An import may start one (Repo() creates a missing or empty
    # directory and refuses one holding other files).
    return repo_path or _state().repo_path


def _run(work: Callable[..., Any], **kwargs: Any) -> None:
    from . import _progress

    with _progress() as bar:
        task = bar.add_task("reading", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, description=f"importing {name}", completed=done - 1, total=total)

        result = work(progress=progress, **kwargs)
    T.echo(result.summary())


_repo_option = click.option("--repo", "repo_path", metavar="PATH", default=None,
                            help="Repository to import into (created when missing) [default: runstore --repo, "
                                 "$RUNSTORE_REPO, ./.runstore].")
_force_option = click.option("--force", is_flag=True,
                             help="Import runs again even when they were imported before and did not change.")
_contexts_option = click.option("--no-contexts", is_flag=True,
                                help="Keep metric names as they are (default: train/loss -> loss with context "
                                     "subset=train).")


@click.group(name="import", context_settings=CONTEXT)
def import_() -> None:
    """Import runs from TensorBoard, MLflow or Aim (the source is only read).

    Importing again skips runs already imported and unchanged; a run that changed
    since (it kept training) is imported again and its old copy removed.
    """


@import_.command(context_settings=CONTEXT)
@click.argument("logdir", type=click.Path())
@click.option("--experiment", metavar="NAME", help="Experiment of the imported runs [default: LOGDIR's name].")
@_repo_option
@_force_option
@_contexts_option
@click.option("--no-verify", is_flag=True, help="Skip the CRC-32C check of each record.")
def tensorboard(logdir: str, experiment: str | None, repo_path: str | None, force: bool, no_contexts: bool,
                no_verify: bool) -> None:
    """Import the runs of a TensorBoard log directory.

    Each directory with event files is a run; add_hparams sub-directories are
    merged into their run as the param `hparams`. No TensorFlow needed.
    """
    from .. import importers

    _run(importers.tensorboard, logdir=logdir, repo=_repo(repo_path), experiment=experiment, force=force,
         contexts=not no_contexts, verify=not no_verify)


@import_.command(context_settings=CONTEXT)
@click.argument("uri")
@click.option("--experiment", "experiments", metavar="NAME", multiple=True,
              help="Import only this MLflow experiment (repeat for several) [default: all].")
@_repo_option
@_force_option
@_contexts_option
def mlflow(uri: str, experiments: tuple[str, ...], repo_path: str | None, force: bool, no_contexts: bool) -> None:
    """Import MLflow runs from URI.

    URI is sqlite:///path/to/mlflow.db, a file store folder (mlruns/), or the
    http(s):// address of an MLflow server (needs runstore[mlflow]). Runs keep
    their experiment, name, status, times, params, tags, parent and metrics;
    local artifacts are copied.
    """
    from .. import importers

    _run(importers.mlflow, uri=uri, repo=_repo(repo_path), experiment=list(experiments) or None, force=force,
         contexts=not no_contexts)


@import_.command(context_settings=CONTEXT)
@click.argument("repo_dir", metavar="REPO_PATH", type=click.Path())
@click.option("--python", "python", metavar="PATH", default=None,
              help="Interpreter of an environment with the aim package [default: this one].")
@click.option("--experiment", metavar="NAME", help="Experiment of the imported runs [default: Aim's].")
@_repo_option
@_force_option
@_contexts_option
def aim(repo_dir: str, python: str | None, experiment: str | None, repo_path: str | None, force: bool,
        no_contexts: bool) -> None:
    """Import the runs of the Aim repository at REPO_PATH (the folder with .aim).

    Read through the aim package, in a subprocess: under this Python when aim
    is installed here, else under --python (aim has no wheels for the newest
    Pythons: make a virtual environment with aim and pass its interpreter).
    """
    from .. import importers

    _run(importers.aim, path=repo_dir, repo=_repo(repo_path), python=python, experiment=experiment,
         force=force, contexts=not no_contexts)


def register(cli: click.Group) -> None:
    cli.add_command(import_)
