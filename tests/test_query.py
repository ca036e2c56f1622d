"""The query language: a table of valid queries with known run sets, a table of
invalid ones with their error class and column, and property tests (fuzzing,
and agreement between the vectorised evaluator and a per-run reference)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstore import QueryNameError, QuerySyntaxError, Repo, Run
from runstore.analysis import run_query, sequence_query
from runstore.query import compile_query
from runstore.query.tables import cache_for
from runstore.query.compiler import run_mask, seq_mask
from runstore.query.reference import run_matches, seq_matches

# label -> how the run is made; params, sequences (name, context, values), final status
RUNS = {
    "a": dict(name="alpha", experiment="mnist", tags=["cnn", "best"], status="finished",
              params={"hparams": {"lr": 0.001, "bs": 32, "accum": 8, "model": "lstm", "layers": [64, 64],
                                  "dropout": 0.1, "opt": {"name": "adam", "beta": 0.9}}},
              seqs=[("loss", {"subset": "train"}, [0.9, 0.5, 0.2]), ("loss", {"subset": "val"}, [1.0, 0.6, 0.3]),
                    ("acc", {"subset": "val"}, [0.5, 0.9])]),
    "b": dict(name="beta", experiment="mnist", tags=["cnn"], status="finished",
              params={"hparams": {"lr": 0.01, "bs": 64, "accum": 2, "model": "gru", "layers": [128],
                                  "opt": {"name": "sgd"}}},
              seqs=[("loss", {"subset": "train"}, [0.8, 0.5])]),
    "g1": dict(name="gamma-1", experiment="cifar", tags=[], status="failed",
               params={"hparams": {"lr": "auto", "bs": 128, "model": "transformer", "dropout": None}}, seqs=[]),
    "g2": dict(name="gamma-2", experiment="cifar", tags=["best"], status="killed",
               params={"hparams": {"lr": 0.1, "bs": "32", "model": "lstm", "dropout": 0.5, "flag": True}},
               seqs=[("loss", {"subset": "val"}, [0.9, 0.7])]),
    "d": dict(name="delta", experiment="imagenet", tags=["resnet"], status="running",
              params={"hparams": {"lr": 0.0005, "bs": 256, "accum": 1, "model": None, "flag": False}, "seed": 7},
              seqs=[("acc", {"subset": "val", "fold": 1}, [0.1, 0.2, 0.4])]),
    "x": dict(name=None, experiment=None, tags=[], status="finished", archived=True, description="empty",
              params={}, seqs=[]),
    "e": dict(name="eps", experiment="mnist", tags=["cnn"], status="finished", parent="a",
              params={"hparams": {"lr": 0.001, "model": "LSTM", "bs": 32}, "name": "param-name",
                      "status": {"code": 3}},
              seqs=[("loss", {"subset": "train"}, [0.4, 0.35]), ("lr", {}, [0.001, 0.0005])]),
}
ALL = set(RUNS)


def build(repo: Repo) -> tuple[dict, list]:
    ids, live = {}, []
    for label, spec in RUNS.items():
        run = Run(repo=repo, name=spec["name"], experiment=spec["experiment"], tags=spec["tags"],
                  description=spec.get("description"), parent=ids.get(spec.get("parent")))
        for key, value in spec["params"].items():
            run[key] = value
        for name, ctx, values in spec["seqs"]:
            for step, v in enumerate(values):
                run.track(v, name=name, step=step, context=ctx)
        if spec.get("archived"):
            run.archived = True
        ids[label] = run.id
        if spec["status"] == "running":
            run.flush()
            live.append(run)
        else:
            run.close(status=spec["status"])
    return ids, live


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    repo = Repo(tmp_path_factory.mktemp("q") / "repo")
    ids, live = build(repo)
    created = {label: repo.get_run(rid).created_at for label, rid in ids.items()}
    yield repo, ids, created
    for run in live:
        run.close()


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


def labels(repo, ids, collection) -> set:
    back = {v: k for k, v in ids.items()}
    return {back[i] for i in collection.ids}


VALID = [
    ("run.hparams.lr < 0.01", {"a", "d", "e"}),
    ("run.hparams.lr <= 0.01", {"a", "b", "d", "e"}),
    ("run.hparams.lr == 'auto'", {"g1"}),
    ("run.hparams.lr > 'a'", {"g1"}),
    ("run.hparams.lr != 0.001", {"b", "g2", "d"}),
    ("0.0001 <= run.hparams.lr < 0.01", {"a", "d", "e"}),
    ("0.001 <= run.hparams.lr <= 0.01 <= 1", {"a", "b", "e"}),
    ("run.hparams.lr in [0.001, 'auto']", {"a", "g1", "e"}),
    ("run.hparams.lr not in [0.001, 'auto']", {"b", "g2", "d"}),
    ("run.hparams.lr", {"a", "b", "g1", "g2", "d", "e"}),
    ("run.experiment == 'mnist'", {"a", "b", "e"}),
    ("run.experiment != 'mnist'", {"g1", "g2", "d", "x"}),
    ('run.experiment == "default"', {"x"}),
    ("run.experiment >= 'imagenet'", {"a", "b", "d", "e"}),
    ("run.name == 'alpha'", {"a"}),
    ("run.name is None", {"x"}),
    ("run.name is not None", ALL - {"x"}),
    ("run.name.startswith('gamma')", {"g1", "g2"}),
    ("run.name.endswith('a')", {"a", "b", "d"}),
    ("run.name.contains('mm')", {"g1", "g2"}),
    ("run.name.matches('^[a-d]')", {"a", "b", "d"}),
    ("run.name.matches('-[0-9]$')", {"g1", "g2"}),
    ("run.name.upper() == 'BETA'", {"b"}),
    ("run.name in ['alpha', 'eps', 'nope']", {"a", "e"}),
    ("run.name not in ('alpha', 'eps')", {"b", "g1", "g2", "d", "x"}),
    ("'a' in run.name", {"a", "b", "g1", "g2", "d"}),
    ("run.name + '!' == 'beta!'", {"b"}),
    ("'best' in run.tags", {"a", "g2"}),
    ("'cnn' not in run.tags", {"g1", "g2", "d", "x"}),
    ("'cnn' in run.tags and run.experiment == 'mnist'", {"a", "b", "e"}),
    ("run.tags == []", {"g1", "x"}),
    ("run.status == 'running'", {"d"}),
    ("run.status in ['failed', 'killed']", {"g1", "g2"}),
    ("run.archived", {"x"}),
    ("not run.archived", ALL - {"x"}),
    ("run.archived == True", {"x"}),
    ("run.archived is False", ALL - {"x"}),
    ("run.description == 'empty'", {"x"}),
    ("run.description is None", ALL - {"x"}),
    ("run.parent is not None", {"e"}),
    ("run.parent == '{id_a}'", {"e"}),
    ("run.id in ['{id_a}', '{id_d}']", {"a", "d"}),
    ("run.ended_at is None", {"d"}),
    ("run.duration >= 0", ALL),
    ("run.pid > 0", ALL),
    ("run.created_at >= '2020-01-01'", ALL),
    ("run.created_at < '2020-01-01T00:00:00'", set()),
    ("run.created_at >= '{t_mid}'", {"g2", "d", "x", "e"}),
    ("'{t_mid}' > run.created_at", {"a", "b", "g1"}),
    ("run.hparams.dropout != 0.1", {"g2"}),
    ("not run.hparams.dropout == 0.1", ALL - {"a"}),
    ("run.hparams.dropout is None", ALL - {"a", "g2"}),
    ("run.hparams.dropout == None", ALL - {"a", "g2"}),
    ("run.hparams.dropout is not None", {"a", "g2"}),
    ("run.hparams.bs * run.hparams.accum >= 256", {"a", "d"}),
    ("run.hparams.bs == 32", {"a", "e"}),
    ("run.hparams.bs == '32'", {"g2"}),
    ("run.hparams.bs > 100", {"g1", "d"}),
    ("run.hparams.bs % 64 == 0", {"b", "g1", "d"}),
    ("-run.hparams.lr > -0.001", {"d"}),
    ("run.hparams.lr * 1000 + 1 == 2", {"a", "e"}),
    ("run.hparams.bs / 0 > 0", set()),
    ("run.hparams.bs - 2 * 16 == 0", {"a", "e"}),
    ("run.hparams.model in ['lstm', 'gru']", {"a", "b", "g2"}),
    ("run.hparams.model.lower() == 'lstm'", {"a", "g2", "e"}),
    ("run.hparams.model is None", {"d", "x"}),
    ("run.hparams.model", {"a", "b", "g1", "g2", "e"}),
    ("run.hparams.flag is True", {"g2"}),
    ("run.hparams.flag == False", {"d"}),
    ("run.hparams.flag == 0", set()),
    ("run.hparams.layers == [64, 64]", {"a"}),
    ("128 in run.hparams.layers", {"b"}),
    ("run.hparams.layers[0] == 64", {"a"}),
    ("run.hparams['opt']['name'] == 'adam'", {"a"}),
    ("run.hparams.opt.beta > 0.5", {"a"}),
    ("run.hparams.opt is not None", {"a", "b"}),
    ("run.seed == 7", {"d"}),
    ("run.params.seed == 7", {"d"}),
    ("run.params.name == 'param-name'", {"e"}),
    ("run.name == 'param-name'", set()),
    ("run.params.status.code == 3", {"e"}),
    ("run.params.hparams.lr == 0.001", {"a", "e"}),
    ("run.hparams.nonexistent == 1", set()),
    ("not run.hparams.nonexistent == 1", ALL),
    ("run.hparams.lr < 0.01 or run.experiment == 'cifar'", {"a", "d", "e", "g1", "g2"}),
    ("(run.hparams.lr < 0.01 or run.experiment == 'cifar') and not 'best' in run.tags", {"d", "e", "g1"}),
    ("not (run.experiment == 'mnist' or run.archived)", {"g1", "g2", "d"}),
    ("seq.name == 'loss'", {"a", "b", "g2", "e"}),
    ("metric.name == 'acc'", {"a", "d"}),
    ("seq.name == 'loss' and seq.context.subset == 'val'", {"a", "g2"}),
    ("seq.name == 'loss' and seq.last < 0.4", {"a", "e"}),
    ("seq.name == 'loss' and seq.context.subset == 'val' and seq.last < 0.5", {"a"}),
    ("seq.max >= 1.0", {"a"}),
    ("seq.count == 3", {"a", "d"}),
    ("seq.context.fold == 1", {"d"}),
    ("seq.last_step == 1", {"a", "b", "g2", "e"}),
    ("seq.first_step == 0", {"a", "b", "g2", "d", "e"}),
    ("seq.min < 0.15", {"d", "e"}),
    ("seq.name != 'lr' and seq.min < 0.15", {"d"}),
    ("seq.name.startswith('lo') and run.hparams.lr < 0.01", {"a", "e"}),
    ("run.hparams.lr < 0.01 or seq.name == 'acc'", {"a", "d", "e"}),
    ("seq.name is None", {"g1", "x"}),
    ("True", ALL),
    ("False", set()),
    ("1 == 1", ALL),
    ("", ALL),
    ("   ", ALL),
]


def fill(query: str, ids: dict, created: dict) -> str:
    mid = (created["g1"] + created["g2"]) / 2
    return (query.replace("{id_a}", ids["a"]).replace("{id_d}", ids["d"])
            .replace("{t_mid}", dt.datetime.fromtimestamp(mid).isoformat()))


@pytest.mark.parametrize("query,expected", VALID, ids=[q or "<empty>" for q, _ in VALID])
def test_valid_query(data, query, expected):
    repo, ids, created = data
    assert labels(repo, ids, repo.query(fill(query, ids, created))) == expected


def test_valid_table_is_large_enough():
    assert len(VALID) >= 50


def test_none_means_everything(data):
    repo, ids, _ = data
    assert set(repo.query(None).ids) == set(ids.values())
    assert len(repo.query_sequences(None)) == sum(len(s["seqs"]) for s in RUNS.values())


INVALID = [
    ("run.a = 1", QuerySyntaxError, 1, 7),
    ("run.a ==", QuerySyntaxError, 1, 9),
    ("rn.name == 1", QueryNameError, 1, 1),
    ("x.y", QueryNameError, 1, 1),
    ("run.name == 'abc", QuerySyntaxError, 1, 13),
    ("run.name.startswth('a')", QueryNameError, 1, 10),
    ("seq.nme == 'loss'", QueryNameError, 1, 1),
    ("metric.value > 1", QueryNameError, 1, 1),
    ("(run.a == 1", QuerySyntaxError, 1, 12),
    ("run.a == 1)", QuerySyntaxError, 1, 11),
    ("run.a === 1", QuerySyntaxError, 1, 9),
    ("run.created_at > 'yesterday'", QuerySyntaxError, 1, 18),
    ("run.name.matches('[')", QuerySyntaxError, 1, 18),
    ("run.name.startswith(1)", QuerySyntaxError, 1, 21),
    ("run.name.startswith()", QuerySyntaxError, 1, 10),
    ("run.name.lower(1)", QuerySyntaxError, 1, 10),
    ("run.a is 3", QuerySyntaxError, 1, 10),
    ("run", QuerySyntaxError, 1, 1),
    ("seq == 1", QuerySyntaxError, 1, 1),
    ("run.name.x == 1", QueryNameError, 1, 1),
    ("seq.last.x > 1", QueryNameError, 1, 1),
    ("run.a and", QuerySyntaxError, 1, 10),
    ("and run.a", QuerySyntaxError, 1, 1),
    ("run.a in [run.b]", QuerySyntaxError, 1, 11),
    ("run.a @ 2", QuerySyntaxError, 1, 7),
    ("run.a == 1 2", QuerySyntaxError, 1, 12),
    ("run.tags[run.a]", QuerySyntaxError, 1, 10),
    ("not", QuerySyntaxError, 1, 4),
    ("run.a == 1\nand run.b ==", QuerySyntaxError, 2, 13),
    ("run.hparams.lr <\n", QuerySyntaxError, 1, 17),
]


@pytest.mark.parametrize("query,cls,line,column", INVALID, ids=[q for q, *_ in INVALID])
def test_invalid_query(data, query, cls, line, column):
    repo, _, _ = data
    with pytest.raises(cls) as info:
        repo.query(query)
    err = info.value
    assert type(err) is cls
    assert (err.line, err.column) == (line, column)
    assert err.query == query
    # The message repeats the offending line with a caret under the column.
    shown, caret = str(err).splitlines()[-2:]
    offending = query.splitlines()[line - 1] if query.splitlines() else ""
    assert shown.strip() == offending.strip()
    assert caret.index("^") - 4 == column - 1


def test_invalid_table_is_large_enough():
    assert len(INVALID) >= 20


def test_errors_are_value_errors_and_suggest(data):
    repo, _, _ = data
    with pytest.raises(ValueError, match="did you mean run"):
        repo.query("rn.name == 'x'")
    with pytest.raises(QueryNameError, match="did you mean startswith"):
        repo.query("run.name.startwith('a')")
    with pytest.raises(QueryNameError, match="did you mean last"):
        repo.query_sequences("seq.lst < 1")
    with pytest.raises(QuerySyntaxError, match="use '==' to compare"):
        repo.query("run.name = 'x'")
    with pytest.raises(QueryNameError, match="run.params.name.x"):
        repo.query("run.name.x == 1")


def test_sequence_query(data):
    repo, ids, _ = data
    seqs = repo.query_sequences("seq.name == 'loss' and seq.context.subset == 'val' and run.hparams.lr < 0.01")
    assert [(s.run.id, s.name, s.context) for s in seqs] == [(ids["a"], "loss", {"subset": "val"})]
    assert len(repo.query_sequences("metric.name == 'loss'")) == 5
    assert len(repo.query_sequences("run.experiment == 'cifar'")) == 1  # g1 has none, g2 has one
    assert len(repo.query_sequences("seq.name is None")) == 0  # virtual rows never come out


# -- caching and freshness -----------------------------------------------------------------
def test_new_runs_and_points_are_visible_at_once(repo):
    assert len(repo.query("run.hparams.lr < 1")) == 0
    run = Run(repo=repo)
    run["hparams"] = {"lr": 0.1}
    assert len(repo.query("run.hparams.lr < 1")) == 1
    run.track(5.0, name="loss")
    run.flush()
    assert len(repo.query("seq.last == 5")) == 1
    run.track(1.0, name="loss")
    run.flush()
    assert len(repo.query("seq.last == 5")) == 0
    run.close()
    assert repo.query("run.status == 'finished'").ids == [run.id]


def test_only_the_changed_half_is_rebuilt(repo):
    run = Run(repo=repo)
    run["p"] = 1
    run.track(1.0, name="loss")
    run.flush()
    repo.query("seq.last > 0")
    cache = cache_for(repo)
    runs_table, base = cache._runs, cache._base
    repo.query("seq.last > 0")
    assert cache._runs is runs_table and cache._base is base  # nothing changed: nothing rebuilt
    run.track(2.0, name="loss")
    run.flush()
    assert len(repo.query("seq.last == 2")) == 1
    assert cache._runs is runs_table and cache._base is not base  # points only: run table kept
    base = cache._base
    Run(repo=repo).close()
    assert len(repo.query("seq.last == 2")) == 1
    assert cache._runs is not runs_table and cache._base is base  # a new run: summaries not rescanned
    run.close()


def test_commits_of_another_process_are_visible(repo):
    assert len(repo.query("run.hparams.lr == 0.5")) == 0
    code = textwrap.dedent(f"""
        from runstore import Repo, Run
        with Run(repo=Repo({str(repo.path)!r})) as run:
            run["hparams"] = {{"lr": 0.5}}
            run.track(3.0, name="loss")
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(repo.query("run.hparams.lr == 0.5")) == 1
    assert len(repo.query("seq.last == 3")) == 1


def test_mixed_types_across_runs(repo):
    for value in [1, 2.5, "3", True, None, [1, 2], {"a": 1}]:
        Run(repo=repo)["v"] = {"x": value}
    assert len(repo.query("run.v.x < 3")) == 2
    assert len(repo.query("run.v.x == '3'")) == 1
    assert len(repo.query("run.v.x == True")) == 1
    assert len(repo.query("run.v.x is None")) == 1
    assert len(repo.query("run.v.x == [1, 2]")) == 1
    assert len(repo.query("run.v.x.a == 1")) == 1
    assert len(repo.query("run.v.x * 2 > 1")) == 2
    assert len(repo.query("run.v.x is not None")) == 6


# -- properties ----------------------------------------------------------------------------
TOKENS = ["run", "seq", "metric", ".", "hparams", "lr", "name", "tags", "context", "last", "(", ")", "[", "]",
          ",", "and", "or", "not", "in", "is", "None", "True", "False", "==", "!=", "<", "<=", ">", ">=", "+",
          "-", "*", "/", "%", "'a'", '"b"', "1", "0.5", "1e-3", "startswith", "matches", "lower", "x", "=", "@"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_random_text_never_crashes(data, text):
    repo, _, _ = data
    try:
        run_query(repo, text)
        sequence_query(repo, text)
    except (QuerySyntaxError, QueryNameError):
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TOKENS), max_size=12))
def test_token_soup_never_crashes(data, tokens):
    repo, _, _ = data
    text = " ".join(tokens)
    try:
        run_query(repo, text)
        sequence_query(repo, text)
    except (QuerySyntaxError, QueryNameError):
        pass


FIELDS = ["run.hparams.lr", "run.hparams.bs", "run.hparams.model", "run.hparams.dropout", "run.hparams.flag",
          "run.hparams.layers", "run.name", "run.experiment", "run.tags", "run.archived", "run.seed",
          "run.hparams.accum", "seq.name", "seq.last", "seq.count", "seq.context.subset", "seq.context.fold"]
LITERALS = ["0.001", "0.01", "32", "64", "1", "0", "-1", "'lstm'", "'32'", "'alpha'", "'a'", "'val'", "'loss'",
            "True", "False", "None", "[64, 64]", "[]", "0.5", "'best'", "'cnn'"]
OPS = ["==", "!=", "<", "<=", ">", ">="]


def _atoms():
    field = st.sampled_from(FIELDS)
    lit = st.sampled_from(LITERALS)
    value = st.one_of(field, lit, st.builds(lambda f, o, v: f"{f} {o} {v}", field, st.sampled_from("+-*/%"),
                                            st.one_of(field, st.sampled_from(["2", "0", "3", "'x'"]))))
    compare = st.builds(lambda a, o, b: f"{a} {o} {b}", value, st.sampled_from(OPS), value)
    chain = st.builds(lambda a, o, b, p, c: f"{a} {o} {b} {p} {c}", lit, st.sampled_from(OPS), field,
                      st.sampled_from(OPS), lit)
    member = st.builds(lambda a, o, lst: f"{a} {o} [{', '.join(lst)}]", field, st.sampled_from(["in", "not in"]),
                       st.lists(lit.filter(lambda s: not s.startswith("[")), max_size=3))
    contains = st.builds(lambda a, o, f: f"{a} {o} {f}", lit, st.sampled_from(["in", "not in"]), field)
    is_ = st.builds(lambda f, o, c: f"{f} {o} {c}", value, st.sampled_from(["is", "is not"]),
                    st.sampled_from(["None", "True", "False"]))
    method = st.builds(lambda f, m, a: f"{f}.{m}({a})", field, st.sampled_from(["startswith", "endswith", "contains"]),
                       st.sampled_from(["'a'", "'l'", "'ta'", "''"]))
    lowered = st.builds(lambda f, v: f"{f}.lower() == {v}", field, lit)
    return st.one_of(compare, chain, member, contains, is_, method, lowered, field)


def _expressions():
    return st.recursive(
        _atoms(),
        lambda inner: st.one_of(
            st.builds(lambda a, o, b: f"({a}) {o} ({b})", inner, st.sampled_from(["and", "or"]), inner),
            st.builds(lambda a: f"not ({a})", inner),
        ),
        max_leaves=4,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_expressions())
def test_vectorised_agrees_with_per_run_reference(data, text):
    repo, _, _ = data
    plan = compile_query(text)
    runs, seqs = cache_for(repo).tables(True)
    scan_runs, scan_seqs = repo._scan_runs(), repo._scan_sequences()
    fast = run_mask(plan, runs, seqs)
    slow = np.array(run_matches(plan, scan_runs, scan_seqs), dtype=bool)
    assert fast.tolist() == slow.tolist(), text
    fast_seq = seq_mask(plan, runs, seqs)[: seqs.n_real]
    slow_seq = np.array(seq_matches(plan, scan_runs, scan_seqs), dtype=bool)
    assert fast_seq.tolist() == slow_seq.tolist(), text


def test_points_tracked_in_this_process_are_seen_without_flush(repo):
    run = Run(repo=repo, flush_interval=3600)
    run.track(7.0, name="loss")
    assert repo.query("seq.last == 7").ids == [run.id]
    assert len(repo.query_sequences("seq.name == 'loss'").to_arrow()) == 1
    run.close()


def test_docs_examples_run():
    import doctest
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "query.md"
    result = doctest.testfile(str(path), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15 and result.failed == 0


def test_long_chains_work_and_deep_nesting_is_a_syntax_error(data):
    repo, ids, _ = data
    names = " or ".join(f"run.name == 'n{i}'" for i in range(3000)) + " or run.name == 'beta'"
    assert labels(repo, ids, repo.query(names)) == {"b"}
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        repo.query("not " * 2000 + "run.archived")
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        repo.query(" + ".join(["run.hparams.bs"] * 2000) + " > 1")
