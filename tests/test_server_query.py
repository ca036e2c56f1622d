"""Queries through a server return what the same queries return locally.

The repository of the query tests (tests/test_query.py) is served by a real
server process; every query of its table, and random combinations of them, is
asked both ways and the Arrow tables compared."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstore import QuerySyntaxError, Repo
from server_proc import ServerProcess
from test_query import VALID, build, fill


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "repo"
    repo = Repo(path)
    ids, live = build(repo)
    created = {label: repo.get_run(rid).created_at for label, rid in ids.items()}
    with ServerProcess(path) as proc:
        yield Repo(proc.url), Repo(path, readonly=True), ids, created
    for run in live:
        run.close()


def same_table(a, b) -> bool:
    # pandas' equality treats NaN == NaN (an epoch never given is NaN on both sides)
    return a.schema == b.schema and a.to_pandas().equals(b.to_pandas())


def ask_both(remote, local, text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ((remote.query(text), local.query(text)),
                (remote.query_sequences(text), local.query_sequences(text)))


@pytest.mark.parametrize("query", [q for q, _ in VALID], ids=[q or "<empty>" for q, _ in VALID])
def test_every_query_of_the_table(served, query):
    remote, local, ids, created = served
    text = fill(query, ids, created)
    (r_runs, l_runs), (r_seqs, l_seqs) = ask_both(remote, local, text)
    assert r_runs.ids == l_runs.ids
    assert same_table(r_runs.to_arrow(), l_runs.to_arrow())
    assert r_seqs.keys == l_seqs.keys
    assert same_table(r_seqs.to_arrow(), l_seqs.to_arrow())


TERMS = [q for q, _ in VALID if q and "\n" not in q]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TERMS), min_size=1, max_size=3), st.lists(st.sampled_from(["and", "or"]),
       min_size=2, max_size=2), st.booleans())
def test_random_combinations(served, terms, ops, negate):
    remote, local, ids, created = served
    text = f" {ops[0]} ".join(f"({fill(t, ids, created)})" for t in terms)
    if negate:
        text = f"not ({text})"
    (r_runs, l_runs), (r_seqs, l_seqs) = ask_both(remote, local, text)
    assert r_runs.ids == l_runs.ids
    assert same_table(r_runs.to_arrow(), l_runs.to_arrow())
    assert r_seqs.keys == l_seqs.keys


def test_collections_over_a_remote_repository(served):
    remote, local, ids, _ = served
    runs = remote.query("run.experiment == 'mnist'")
    assert len(runs) == 3 and [r.id for r in runs] == local.query("run.experiment == 'mnist'").ids
    assert runs.sort("hparams.bs").to_numpy("hparams.bs").tolist() == [32, 32, 64]
    assert runs.filter(hparams__bs=32).ids == local.query("run.experiment == 'mnist'").filter(hparams__bs=32).ids
    assert runs.to_pandas().shape == local.query("run.experiment == 'mnist'").to_pandas().shape
    assert runs.to_polars().shape[0] == 3
    grouped = runs.group_by("hparams.bs", count=len)
    assert str(grouped) == str(local.query("run.experiment == 'mnist'").group_by("hparams.bs", count=len))
    seqs = remote.query_sequences("seq.name == 'loss'")
    lseqs = local.query_sequences("seq.name == 'loss'")
    aligned, laligned = seqs.align(), lseqs.align()
    assert aligned.keys == laligned.keys and (aligned.values.tobytes() == laligned.values.tobytes())
    assert [d["steps"].tolist() for d in seqs.to_numpy()] == [d["steps"].tolist() for d in lseqs.to_numpy()]
    assert [d["steps"].tolist() for d in seqs.downsample(3)] == [d["steps"].tolist() for d in lseqs.downsample(3)]
    one = remote.get_run(ids["a"])
    assert one.params["hparams"]["opt"] == {"name": "adam", "beta": 0.9} and one.tags == ["cnn", "best"]


def test_syntax_errors_are_raised_before_any_network(served):
    remote, *_ = served
    with pytest.raises(QuerySyntaxError) as info:
        remote.query("run.hparams.lr <")
    assert info.value.column == 17


def test_query_warnings_come_back(served):
    remote, *_ = served
    with pytest.warns(Warning, match="run.hparams.nothere"):
        remote.query("run.hparams.nothere > 1")
