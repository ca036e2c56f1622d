"""``runstore ui``: options, the token rules at start, and the message without the extra."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import runstore.ui as ui_pkg
from runstore import Run
from runstore.cli import cli


@pytest.fixture
def started(monkeypatch):
    """Capture what uvicorn would serve instead of serving it."""
    calls = {}

    def fake_run(app, host, port, log_level):
        calls.update(app=app, host=host, port=port)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("RUNSTORE_UI_TOKEN", raising=False)
    return calls


def test_ui_serves_the_repo_on_loopback(repo, started):
    Run(repo=repo, name="a").close()
    result = CliRunner().invoke(cli, ["--repo", str(repo.path), "ui", "--port", "43999"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:43999/" in result.output and "token" not in result.output
    assert started["host"] == "127.0.0.1" and started["port"] == 43999
    assert started["app"].state.repo == repo


def test_ui_on_another_address_generates_and_prints_a_token(repo, started):
    result = CliRunner().invoke(cli, ["ui", "--repo", str(repo.path), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "?token=" in result.output and "generated token" in result.output
    token = result.output.split("?token=")[1].split()[0]
    assert len(token) >= 24
    from starlette.testclient import TestClient

    c = TestClient(started["app"], base_url="http://10.0.0.5:43800")
    assert c.get("/api/schema").status_code == 401
    assert c.get("/api/schema", headers={"authorization": f"Bearer {token}"}).status_code == 200


def test_ui_token_from_the_environment(repo, started, monkeypatch):
    monkeypatch.setenv("RUNSTORE_UI_TOKEN", "from-env")
    result = CliRunner().invoke(cli, ["ui", "--repo", str(repo.path)])
    assert result.exit_code == 0 and "?token=from-env" in result.output


def test_ui_without_the_extra_says_what_to_install(repo, monkeypatch):
    def missing():
        raise ui_pkg.UIUnavailableError("the web UI needs starlette, uvicorn, which are not installed: "
                                        "pip install 'runstore[ui]'")

    monkeypatch.setattr(ui_pkg, "_require", missing)
    result = CliRunner().invoke(cli, ["ui", "--repo", str(repo.path)])
    assert result.exit_code == 1
    assert "pip install 'runstore[ui]'" in result.output


def test_ui_on_a_missing_repository_is_an_error(tmp_path, started):
    result = CliRunner().invoke(cli, ["ui", "--repo", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "Error:" in result.output and not started
