"""runstore server: a real server process, real clients (this process and children)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from runstore import Repo, RepositoryError, Run
from server_proc import ServerProcess


@pytest.fixture(autouse=True)
def spool_home(tmp_path, monkeypatch):
    """Spools go under the test's directory, never the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "runstore" / "spool"


@pytest.fixture
def server(tmp_path):
    with ServerProcess(tmp_path / "served") as proc:
        yield proc


def local(proc: ServerProcess) -> Repo:
    return Repo(proc.repo_path, readonly=True)


def test_scalars_params_tags_end_to_end(server):
    repo = Repo(server.url)
    assert repr(repo) == f"Repo({server.url!r})"
    run = Run(repo=repo, experiment="mnist", name="baseline", tags=["a"])
    assert type(run).__name__ == "RemoteRun"
    run["hparams"] = {"lr": 1e-3, "layers": [64, 32]}
    for i in range(2500):
        run.track(i * 0.5, name="loss", context={"subset": "train"})
        run.log_metrics({"acc": i / 2500}, step=i * 2, epoch=i // 100, context={"subset": "val"})
    run.track_many(np.arange(5.0), "bulk", steps=[1, 2, 3, 2**60, 2**62])
    run.add_tag("b")
    run.remove_tag("a")
    run.name = "renamed"
    run.close()

    stored = local(server).get_run(run.id)
    assert (stored.status, stored.name, stored.experiment, stored.tags) == ("finished", "renamed", "mnist", ["b"])
    assert stored.params == {"hparams": {"lr": 1e-3, "layers": [64, 32]}}
    assert stored.hostname == run.hostname and stored.pid == run.pid
    loss = stored.sequence("loss", {"subset": "train"})
    assert loss.count == 2500
    np.testing.assert_array_equal(loss.steps, np.arange(2500))
    np.testing.assert_array_equal(loss.values, np.arange(2500) * 0.5)
    acc = stored.sequence("acc", {"subset": "val"})
    np.testing.assert_array_equal(acc.steps, np.arange(2500) * 2)
    np.testing.assert_array_equal(acc.epochs, np.arange(2500) // 100)
    assert acc.timestamps.min() >= stored.created_at - 1
    bulk = stored.sequence("bulk")
    assert bulk.steps.tolist() == [1, 2, 3, 2**60, 2**62]  # int64 steps beyond 2**53 exact
    assert local(server).check() == []
    # the remote view reads the same record
    view = repo.get_run(run.id)
    assert (view.status, view.tags, view.params["hparams"]["lr"]) == ("finished", ["b"], 1e-3)


def test_default_steps_continue_across_flushes_and_resume(server):
    repo = Repo(server.url)
    run = Run(repo=repo)
    for i in range(10):
        run.track(float(i), name="x")
        if i == 4:
            run.flush()  # waits for the server's acknowledgement
            assert local(server).get_run(run.id).sequence("x").count == 5
    run.close()
    again = Run(repo=repo, run_id=run.id)
    again.track(10.0, name="x")
    again.track(11.0, name="x", step=100)
    again.track(12.0, name="x")
    again.close()
    seq = local(server).get_run(run.id).sequence("x")
    assert seq.steps.tolist() == list(range(11)) + [100, 101]
    assert seq.values.tolist() == [float(i) for i in range(13)]


def test_an_op_sent_twice_is_applied_once(server):
    from runstore.server import _protocol as P
    from runstore.server._link import Link
    from runstore.server._shipper import to_batch

    link = Link(P.Address(server.url), None)
    run_id = "0" * 8 + "1234567890abcdef"
    record = {"name": "dup", "experiment": "default", "tags": [], "description": None, "status": "running",
              "created_at": 1.0, "ended_at": None, "parent": None, "archived": False, "hostname": "h",
              "pid": 1, "artifacts": []}
    create = {"w": "w1", "n": 1, "run": run_id, "create": [record, {}]}
    assert link.action("op", create) == {"ok": 1}
    assert link.action("op", create) == {"ok": 1, "dup": 1}
    rows = np.array([[1.0, np.nan, np.nan, 5.0], [2.0, np.nan, np.nan, 6.0]])
    points = {"w": "w1", "n": 2, "run": run_id, "seqs": [["loss", {}]]}
    batch = to_batch([(0, [rows])])
    assert link.put(points, batch) == {"ok": 1}
    assert link.put(points, batch) == {"ok": 1, "dup": 1}
    gap = link.put(dict(points, n=4), batch)
    assert "before op 3" in gap["error"]
    stored = local(server).get_run(run_id).sequence("loss")
    assert stored.values.tolist() == [1.0, 2.0] and stored.steps.tolist() == [0, 1]
    link.close()


CLIENT = textwrap.dedent("""
    import sys
    from runstore import Repo, Run
    url, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    repo = Repo(url, flush_interval=0.05)
    for r in range(2):
        run = Run(repo=repo, experiment="many", name=f"c{k}-r{r}")
        run["hparams"] = {"client": k, "run": r}
        for i in range(n):
            run.track(float(i), name="loss", context={"subset": "train"})
            if i % 3 == 0:
                run.track(float(-i), name="val", step=i, context={"subset": "val"})
        run.close()
""")


def test_several_client_processes(server, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    n = 3000
    procs = [subprocess.Popen([sys.executable, str(script), server.url, str(k), str(n)]) for k in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    repo = local(server)
    runs = repo.runs()
    assert sorted(r.name for r in runs) == sorted(f"c{k}-r{r}" for k in range(3) for r in range(2))
    for run in runs:
        assert run.status == "finished"
        assert run.sequence("loss", {"subset": "train"}).values.tolist() == [float(i) for i in range(n)]
        assert run.sequence("val", {"subset": "val"}).steps.tolist() == list(range(0, n, 3))
    assert repo.check() == []


def test_server_killed_mid_run_spools_then_drains(tmp_path, spool_home):
    proc = ServerProcess(tmp_path / "served").start()
    try:
        repo = Repo(proc.url, flush_interval=0.05, close_timeout=60)
        run = Run(repo=repo)
        run["hparams"] = {"lr": 0.1}
        spooled = 0
        for i in range(3000):
            run.track(float(i), name="loss")
            if i % 2:
                run.track(float(-i), name="odd", step=i, context={"k": 1})
            if i == 1000:
                run.flush()
                proc.kill()  # SIGKILL: whatever it acknowledged is on disk
                run.add_tag("while-down")
            if 1000 < i < 2000 and i % 100 == 0:
                run.flush()  # returns at once: the server is away, the data goes to the spool
                spooled = max(spooled, len(list(repo.spool_dir.glob("*.op"))))
            if i == 2000:
                proc = ServerProcess(proc.repo_path, port=proc.port).start()
        run.close()
        assert spooled > 0  # the ops really went to disk while the server was away
        assert list(repo.spool_dir.glob("*.op")) == []  # and were drained once it was back
        stored = local(proc).get_run(run.id)
        seq = stored.sequence("loss")
        assert seq.count == 3000
        assert seq.values.tolist() == [float(i) for i in range(3000)]
        assert seq.steps.tolist() == list(range(3000))
        assert stored.sequence("odd", {"k": 1}).steps.tolist() == list(range(1, 3000, 2))
        assert stored.tags == ["while-down"] and stored.status == "finished"
        assert local(proc).check() == []
    finally:
        proc.stop()
        proc.kill()


OFFLINE = textwrap.dedent("""
    import sys, warnings
    from runstore import Repo, Run
    url = sys.argv[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        repo = Repo(url, close_timeout=0.5)
        run = Run(repo=repo, experiment="offline", name="no-network")
        run["hparams"] = {"lr": 0.5}
        with open(sys.argv[2], "wb") as f:
            f.write(bytes(range(256)) * 5000)
        run.log_artifact(sys.argv[2], kind="model")
        for i in range(5000):
            run.track(float(i), name="loss", context={"subset": "train"})
            run.track_many([float(i)], name="many")
        run.close()
    print(run.id)
    for w in caught:
        print("WARNING", w.message)
""")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sync_of_a_spool_written_while_no_server_existed(tmp_path, spool_home):
    import os
    import shutil

    port = free_port()
    url = f"grpc://127.0.0.1:{port}"
    script = tmp_path / "offline.py"
    script.write_text(OFFLINE)
    env = dict(os.environ)
    out = subprocess.run([sys.executable, str(script), url, str(tmp_path / "model.bin")], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.split()[0]
    assert "cannot be reached" in out.stdout  # Repo(url) warned
    spool = spool_home / f"127.0.0.1_{port}"
    assert "runstore sync --spool" in out.stdout and str(spool) in out.stdout  # close() named the spool
    files = sorted(spool.glob("*.op"))
    assert files and (spool / "server.txt").read_text().strip() == url
    saved = tmp_path / "saved"
    shutil.copytree(spool, saved)

    with ServerProcess(tmp_path / "served", port=port) as proc:
        sync = subprocess.run([sys.executable, "-m", "runstore", "sync", "--server", url], capture_output=True,
                              text=True, env=env, timeout=120)
        assert sync.returncode == 0, sync.stderr
        assert f"sent {len(files)} op(s) (10,000 points) of 1 run(s) to {url}" in sync.stdout
        assert list(spool.glob("*.op")) == []
        again = subprocess.run([sys.executable, "-m", "runstore", "sync", "--spool", str(saved)],
                               capture_output=True, text=True, env=env, timeout=120)
        assert again.returncode == 0, again.stderr
        assert f"{len(files)} were there already" in again.stdout  # sent twice, applied once
        stored = local(proc).get_run(run_id)
        assert (stored.name, stored.status, stored.params) == ("no-network", "finished", {"hparams": {"lr": 0.5}})
        assert stored.sequence("loss", {"subset": "train"}).values.tolist() == [float(i) for i in range(5000)]
        assert stored.sequence("many").count == 5000
        (art,) = stored.artifacts
        assert open(art["path"], "rb").read() == bytes(range(256)) * 5000
        assert local(proc).check() == []


def test_token_required_and_checked(tmp_path):
    token_file = tmp_path / "token.txt"
    token_file.write_text("s3cret-token\n")
    with ServerProcess(tmp_path / "served", "--token-file", str(token_file)) as proc:
        with pytest.raises(RepositoryError, match="the server refused the token"):
            Repo(proc.url)
        with pytest.raises(RepositoryError, match="the server refused the token"):
            Repo(proc.url, token="wrong")
        repo = Repo(proc.url, token="s3cret-token")
        with Run(repo=repo) as run:
            run.track(1.0, name="x")
        assert local(proc).get_run(run.id).sequence("x").count == 1


def test_non_loopback_bind_without_token_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "runstore", "server", "--repo", str(tmp_path / "r"),
                          "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "without a token" in out.stderr and "--token-file" in out.stderr


def self_signed(tmp_path):
    """A certificate for 127.0.0.1 / localhost and its key, made with `cryptography`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    token_file = tmp_path / "token.txt"
    token_file.write_text("tls-token")
    with ServerProcess(tmp_path / "served", "--tls-cert", str(cert), "--tls-key", str(key),
                       "--token-file", str(token_file)) as proc:
        assert proc.url.startswith("grpc+tls://")
        repo = Repo(proc.url, token="tls-token", tls_ca=cert)
        with Run(repo=repo, name="secure") as run:
            run.track(1.5, name="x")
        assert [r.name for r in repo.query("run.name == 'secure'")] == ["secure"]
        assert local(proc).get_run(run.id).sequence("x").values.tolist() == [1.5]
        # a client that does not trust the certificate cannot talk to the server
        with pytest.warns(RuntimeWarning, match="cannot be reached"):
            Repo(proc.url, token="tls-token", close_timeout=0.5)
        # nor can one that speaks plain gRPC to it
        with pytest.warns(RuntimeWarning, match="cannot be reached"):
            Repo(proc.url.replace("grpc+tls://", "grpc://"), token="tls-token", timeout=2)


def test_token_refused_after_an_offline_start(tmp_path, spool_home):
    """Unreachable at Repo(...): a warning, tracking goes on; the server then refuses the
    token: flush() and close() raise, and the spool keeps the data for `runstore sync`."""
    import os

    port = free_port()
    with pytest.warns(RuntimeWarning, match="cannot be reached"):
        repo = Repo(f"grpc://127.0.0.1:{port}", token="wrong", close_timeout=2)
    run = Run(repo=repo, name="refused")
    for i in range(100):
        run.track(float(i), name="x")
    run.flush()  # nobody listens: returns, the data waits
    token_file = tmp_path / "token.txt"
    token_file.write_text("right")
    with ServerProcess(tmp_path / "served", "--token-file", str(token_file), port=port) as proc:
        with pytest.raises(RepositoryError, match="refused the token"):
            run.flush()
        with pytest.raises(RepositoryError, match="refused the token"):
            run.close()
        assert list(repo.spool_dir.glob("*.op"))
        sync = subprocess.run([sys.executable, "-m", "runstore", "sync", "--spool", str(repo.spool_dir),
                               "--token-file", str(token_file)], capture_output=True, text=True,
                              env=dict(os.environ), timeout=120)
        assert sync.returncode == 0, sync.stderr
        stored = local(proc).get_run(run.id)
        assert (stored.name, stored.status) == ("refused", "finished")
        assert stored.sequence("x").values.tolist() == [float(i) for i in range(100)]


def test_artifacts_stream_in_chunks_exactly_once(server, tmp_path):
    big = tmp_path / "weights.bin"
    payload = np.random.default_rng(0).bytes(2_500_000)  # three chunks of 1 MiB
    big.write_bytes(payload)
    folder = tmp_path / "config"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.yaml").write_text("lr: 0.1\n")
    (folder / "sub" / "b.txt").write_text("")
    repo = Repo(server.url)
    run = Run(repo=repo)
    entry = run.log_artifact(big, kind="model")
    big.write_bytes(b"changed after logging")  # the staged copy is what is sent
    run.log_artifact(folder)
    run.close()
    assert entry["size"] == len(payload)
    stored = local(server).get_run(run.id)
    arts = {a["name"]: a for a in stored.artifacts}
    assert set(arts) == {"weights.bin", "config"} and arts["weights.bin"]["kind"] == "model"
    assert open(arts["weights.bin"]["path"], "rb").read() == payload
    assert open(f"{arts['config']['path']}/a.yaml").read() == "lr: 0.1\n"
    assert open(f"{arts['config']['path']}/sub/b.txt").read() == ""
    assert list((repo.spool_dir / "staged").iterdir()) == []  # staged copies removed once acknowledged
    with pytest.raises(FileNotFoundError):
        run.log_artifact(tmp_path / "missing")


EIGHT = textwrap.dedent("""
    import sys
    from runstore import Repo, Run
    url, k, art = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    repo = Repo(url, flush_interval=0.2, close_timeout=120)
    for r in range(2):
        run = Run(repo=repo, experiment="eight", name=f"c{k}-r{r}")
        run["hparams"] = {"client": k, "run": r, "lr": 0.1 / (k + 1)}
        for i in range(25_000):
            run.track(k + i / 1e5, name="loss", step=i, context={"subset": "train"})
            run.track(-i, name="loss", step=i, context={"subset": "val", "fold": r})
        run.log_artifact(art, name=f"notes-{k}-{r}.txt")
        run.close()
""")


@pytest.mark.slow
def test_eight_client_processes_of_100k_values(server, tmp_path):
    script = tmp_path / "eight.py"
    script.write_text(EIGHT)
    art = tmp_path / "notes.txt"
    art.write_text("notes\\n" * 100)
    procs = [subprocess.Popen([sys.executable, str(script), server.url, str(k), str(art)]) for k in range(8)]
    assert [p.wait(timeout=600) for p in procs] == [0] * 8
    repo = local(server)
    runs = repo.query("run.experiment == 'eight'")
    assert len(runs) == 16
    steps = np.arange(25_000)
    total = 0
    for run in runs:
        k, r = run["hparams.client"], run["hparams.run"]
        train = run.sequence("loss", {"subset": "train"})
        val = run.sequence("loss", {"subset": "val", "fold": r})
        np.testing.assert_array_equal(train.steps, steps)
        np.testing.assert_array_equal(train.values, k + steps / 1e5)
        np.testing.assert_array_equal(val.values, -steps)
        total += train.count + val.count
        (entry,) = run.artifacts
        assert entry["name"] == f"notes-{k}-{r}.txt" and open(entry["path"]).read() == "notes\\n" * 100
    assert total == 8 * 100_000
    assert repo.check() == []


def test_the_ui_from_the_same_process(tmp_path):
    import time
    import urllib.request

    import pyarrow as pa

    ui_port = free_port()
    with ServerProcess(tmp_path / "served", "--ui", "--ui-port", str(ui_port)) as proc:
        with Run(repo=Repo(proc.url), name="seen-in-the-ui") as run:
            run.track(1.0, name="loss")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/runs") as answer:
                    body = answer.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        table = pa.ipc.open_stream(body).read_all()  # the UI's API answers Arrow IPC
        assert "seen-in-the-ui" in table.column("name").to_pylist()
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/") as page:
            assert page.status == 200 and "<html" in page.read().decode().lower()


FORKING = textwrap.dedent("""
    import multiprocessing, sys
    from runstore import Repo, Run

    def worker(repo, n):
        with Run(repo=repo, name="forked-child") as run:
            for i in range(n):
                run.track(float(i), name="y", context={"worker": 1})

    if __name__ == "__main__":
        repo = Repo(sys.argv[1], flush_interval=0.1)
        parent = Run(repo=repo, name="parent")
        parent.track(1.0, name="x")
        parent.flush()  # the parent's channel and DoPut stream are open when it forks
        child = multiprocessing.get_context("fork").Process(target=worker, args=(repo, 500))
        child.start()
        child.join(timeout=120)
        parent.track(2.0, name="x")
        parent.close()
        print("child exit code", child.exitcode)
""")


def test_a_forked_child_tracks_without_touching_the_parents_grpc(server, tmp_path):
    """gRPC hangs in a process forked after its parent used it (a DataLoader worker):
    the child never makes a channel; it spools and an exec'd `runstore sync` sends.
    The training script runs in a process of its own, as it would."""
    import os
    import signal

    script = tmp_path / "forking.py"
    script.write_text(FORKING)
    proc = subprocess.Popen([sys.executable, str(script), server.url], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and "child exit code 0" in out
    stored = {r.name: r for r in local(server).runs()}
    assert stored["forked-child"].status == "finished"
    assert stored["forked-child"].sequence("y", {"worker": 1}).values.tolist() == [float(i) for i in range(500)]
    assert stored["parent"].sequence("x").values.tolist() == [1.0, 2.0]
