"""Console capture: stdout/stderr lines teed into the run's console.log."""

import sys

from runstore import Repo, Run


def test_output_is_copied_and_the_user_sees_it_unchanged(tmp_path, capsys):
    before_out, before_err = sys.stdout, sys.stderr
    run = Run(tmp_path / "runs", capture_output=True, system_metrics=False)
    print("epoch 1 loss 0.5")
    print("warn: lr high", file=sys.stderr)
    print("part ", end="")
    sys.stdout.write("one\nlast line without newline")
    run.close()
    print("after close")
    seen = capsys.readouterr()
    assert seen.out == "epoch 1 loss 0.5\npart one\nlast line without newlineafter close\n"
    assert seen.err == "warn: lr high\n"
    assert sys.stdout is before_out and sys.stderr is before_err

    stored = Repo(tmp_path / "runs").get_run(run.id)
    [entry] = [a for a in stored.artifacts if a["name"] == "console.log"]
    text = open(entry["path"], encoding="utf-8").read()
    assert text == "epoch 1 loss 0.5\n[stderr] warn: lr high\npart one\n"
    assert entry["kind"] == "console" and entry["size"] == len(text.encode())


def test_two_runs_share_one_tee_and_streams_come_back_after_the_last(tmp_path):
    before = sys.stdout
    first = Run(tmp_path / "runs", capture_output=True, system_metrics=False)
    second = Run(tmp_path / "runs", capture_output=True, system_metrics=False)
    print("both")
    first.close()
    assert sys.stdout is not before  # the second still captures
    print("second only")
    second.close()
    assert sys.stdout is before
    logs = [open(r.artifacts_dir / "console.log").read() for r in (first, second)]
    assert logs == ["both\n", "both\nsecond only\n"]


def test_off_by_default(tmp_path):
    before = sys.stdout
    with Run(tmp_path / "runs", system_metrics=False) as run:
        assert sys.stdout is before
    assert run.artifacts == []
