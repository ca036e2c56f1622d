"""RunCollection (issue 4): HydraFlow's filter/sort/get/group_by semantics on columns,
run.get key spelling, typed configs and implementations, tables."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstore import MatchError, Repo, Run
from runstore.analysis.keys import run_cfg, run_get, run_impl
from runstore.analysis.collections import RunCollection

pl = pytest.importorskip("polars")


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


@pytest.fixture
def grid(repo):
    """HydraFlow's 12 runs: x in {1, 2, 3} times y in {a, b, c, d}."""
    for x in (1, 2, 3):
        for y in "abcd":
            with Run(repo=repo, name=f"{x}{y}") as run:
                run["x"] = x
                run["y"] = y
                run["model"] = {"hidden": 512 if y in "ab" else 256}
    return repo.query()


def names(runs) -> list:
    return [r.name for r in runs]


# -- filter --------------------------------------------------------------------------------
def test_hydraflow_filter_ranges_and_lists(grid):
    assert len(grid) == 12
    assert len(grid.filter(x=(1, 2), y=["b", "c"])) == 4
    assert len(grid.filter(x=(1, 3), y=["b", "c"])) == 6
    assert names(grid.filter(x=(1, 2), y=["b", "c"])) == ["1b", "1c", "2b", "2c"]


def test_filter_forms(grid):
    assert len(grid.filter(x=1)) == 4
    assert len(grid.filter(y="a")) == 3
    assert len(grid.filter(("x", 2))) == 4
    assert len(grid.filter({"x": 2, "y": "a"})) == 1
    assert len(grid.filter(x=[1, 3])) == 8
    assert len(grid.filter(x=(2, None))) == 8  # open upper bound
    assert len(grid.filter(model__hidden=512)) == 6
    assert len(grid.filter(("model.hidden", 256), x=3)) == 2
    assert len(grid.filter(x=1).filter(y="a")) == 1  # chaining is AND
    assert len(grid.filter(predicate=lambda r: r["x"] + 1 == 3)) == 4
    assert len(grid.filter(lambda r: r.name.endswith("d"))) == 3
    assert len(grid.filter("run.x >= 2 and run.y != 'a'")) == 6
    assert len(grid.filter(x=lambda v: v % 2 == 1)) == 8
    assert len(grid.filter(x=1.0)) == 4  # 1 == 1.0
    assert len(grid.filter(x="1")) == 0  # a string is not a number
    assert len(grid.filter(x=True)) == 0  # nor is a boolean
    assert len(grid.exclude(x=1)) == 8
    assert len(grid.exclude(x=(1, 2), y=["b", "c"])) == 8


def test_filter_unknown_key_names_the_closest(grid):
    with pytest.raises(KeyError, match="closest keys: model.hidden"):
        grid.filter(model__hiden=512)
    with pytest.raises(ValueError, match="inclusive range"):
        grid.filter(x=(1, 2, 3))
    with pytest.raises(TypeError, match="unsupported filter criterion"):
        grid.filter(42)


def test_list_valued_params_compare_by_equality(repo):
    for layers in ([1, 2], [3], [1, 2, 3], 1):
        Run(repo=repo)["layers"] = layers
    runs = repo.query()
    # A stored list equals the criterion; the scalar 1 is "any of" [1, 2] / "within" (1, 2).
    assert runs.filter(layers=[1, 2]).to_list("layers") == [[1, 2], 1]
    assert runs.filter(layers=(1, 2)).to_list("layers") == [[1, 2], 1]
    assert runs.filter(layers=[3]).to_list("layers") == [[3]]
    assert runs.filter(layers=[1, 2, 3]).to_list("layers") == [[1, 2, 3], 1]
    assert runs.filter(layers=[5, 6]).to_list("layers") == []
    assert runs.filter(layers=(0, 0.5)).to_list("layers") == []


# -- get / try_get / first / last ------------------------------------------------------------
def test_get_and_try_get(grid):
    assert grid.get(x=1, y="a").name == "1a"
    with pytest.raises(MatchError, match="no run matches x=9"):
        grid.get(x=9)
    with pytest.raises(ValueError, match="4 runs match x=1, expected exactly one"):
        grid.get(x=1)
    assert grid.try_get(x=9) is None
    assert grid.try_get(x=3, y="d").name == "3d"
    with pytest.raises(MatchError, match="3 runs match"):
        grid.try_get(y="d")
    assert grid.first(x=2).name == "2a"
    assert grid.last(x=2).name == "2d"
    with pytest.raises(MatchError):
        grid.first(x=9)
    with pytest.raises(MatchError):
        grid.last(x=9)


# -- sort ----------------------------------------------------------------------------------------
def test_sort_keys_and_missing_last(repo):
    for i, (a, b) in enumerate([(2, "x"), (1, "y"), (None, "z"), (3, "x"), (1, "x")]):
        run = Run(repo=repo, name=str(i))
        run["b"] = b
        if a is not None:
            run["a"] = a
    runs = repo.query()
    assert names(runs.sort("a")) == ["1", "4", "0", "3", "2"]
    assert names(runs.sort("a", reverse=True)) == ["3", "0", "1", "4", "2"]  # missing still last
    assert names(runs.sort("a", "b")) == ["4", "1", "0", "3", "2"]
    assert names(runs.sort("b", "a")) == ["4", "0", "3", "1", "2"]
    assert names(runs.sort("name", reverse=True)) == ["4", "3", "2", "1", "0"]


def test_sort_mixed_types_numbers_before_strings(repo):
    for v in ["b", 2, "a", 1.5]:
        Run(repo=repo)["v"] = v
    assert repo.query().sort("v").to_list("v") == [1.5, 2, "a", "b"]


# -- values --------------------------------------------------------------------------------------
def test_to_list_numpy_unique(grid):
    assert grid.to_list("x") == [1] * 4 + [2] * 4 + [3] * 4
    arr = grid.to_numpy("x")
    assert arr.dtype == np.int64 and arr.sum() == 24
    assert grid.to_numpy("y").tolist() == list("abcd") * 3
    assert grid.unique("y").tolist() == ["a", "b", "c", "d"]  # a NumPy array, as in HydraFlow
    assert grid.n_unique("x") == 3
    assert grid.to_list("name")[:2] == ["1a", "1b"]


def test_to_list_missing_and_defaults(repo):
    Run(repo=repo)["a"] = 1
    Run(repo=repo)["b"] = 2
    runs = repo.query()
    with pytest.raises(KeyError, match="default="):
        runs.to_list("a")
    assert runs.to_list("a", default=None) == [1, None]
    assert runs.to_list("a", default=lambda run: run["b"] * 10) == [1, 20]
    assert np.isnan(runs.to_numpy("a", default=np.nan)[1])


# -- group_by ------------------------------------------------------------------------------------
def test_group_by_one_and_several_keys(grid):
    groups = grid.group_by("x")
    assert list(groups) == [1, 2, 3]
    assert all(isinstance(g, RunCollection) and len(g) == 4 for g in groups.values())
    pairs = grid.group_by("x", "y")
    assert len(pairs) == 12 and (2, "c") in pairs
    assert names(pairs[(2, "c")]) == ["2c"]
    assert list(grid.group_by("model.hidden")) == [512, 256]


def test_group_by_unhashable_values_become_tuples(repo):
    for layers in ([1, 2], [3], [1, 2]):
        Run(repo=repo)["layers"] = layers
    groups = repo.query().group_by("layers")
    assert {k: len(v) for k, v in groups.items()} == {(1, 2): 2, (3,): 1}


def test_group_by_with_aggregations(grid):
    table = grid.group_by("y", count=len, total=lambda g: int(g.to_numpy("x").sum()))
    assert isinstance(table, pl.DataFrame)
    assert table.columns == ["y", "count", "total"]
    assert table.rows() == [("a", 3, 6), ("b", 3, 6), ("c", 3, 6), ("d", 3, 6)]
    two = grid.group_by("model.hidden", "x", count=len)
    assert two.shape == (6, 3) and two["count"].to_list() == [2] * 6


# -- tables ----------------------------------------------------------------------------------------
def test_to_frame_and_to_arrow(grid):
    df = grid.to_frame("x", "y", "name")
    assert isinstance(df, pl.DataFrame) and df.columns == ["x", "y", "name"]
    assert df["x"].dtype == pl.Int64 and df.height == 12
    full = grid.to_arrow()
    for col in ("id", "name", "experiment", "status", "tags", "created_at", "ended_at", "x", "y", "model.hidden"):
        assert col in full.column_names
    assert pa.types.is_timestamp(full.schema.field("created_at").type)
    extra = grid.to_frame("x", both=lambda r: {"double": r["x"] * 2, "tag": r.name}, one=lambda r: np.float64(1.5))
    assert extra.columns == ["x", "double", "tag", "one"]
    assert extra["double"].to_list()[:4] == [2, 2, 2, 2]
    assert extra["one"].dtype == pl.Float64
    pdf = grid.to_pandas("x")
    assert list(pdf["x"])[:4] == [1, 1, 1, 1]


def test_missing_optional_package_is_named(grid, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake(name, *args, **kw):
        if name == "polars":
            raise ImportError("no polars here")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.delitem(__import__("sys").modules, "polars", raising=False)
    with pytest.raises(ImportError, match=r"runstore\[polars\]"):
        grid.to_polars()


def test_sequence_summaries_as_keys(repo):
    for i in range(3):
        with Run(repo=repo) as run:
            run["lr"] = 0.1 * (i + 1)
            run.track_many([1.0, 0.5 - 0.1 * i], name="loss", context={"subset": "train"})
            run.track_many([2.0, 1.0 - 0.1 * i], name="loss", context={"subset": "val"})
            run.track(0.9, name="acc")
    runs = repo.query()
    assert runs.to_list("loss[subset=val].last") == pytest.approx([1.0, 0.9, 0.8])
    assert runs.to_list("acc.last") == [0.9] * 3
    assert runs.to_list("loss[subset=train].count") == [2, 2, 2]
    assert runs.sort("loss[subset=val].min").to_list("lr") == pytest.approx([0.3, 0.2, 0.1])
    with pytest.raises(MatchError, match="loss.*ambiguous.*subset"):
        runs.to_list("loss.last")
    table = runs.group_by("acc.last", best=lambda g: float(g.to_numpy("loss[subset=val].last").min()))
    assert table.rows() == [(0.9, pytest.approx(0.8))]
    assert runs.to_frame("loss[subset=val].last").columns == ["loss[subset=val].last"]


# -- collection protocol --------------------------------------------------------------------------
def test_indexing_slicing_concat_repr(grid):
    assert isinstance(grid[0], Run) and grid[0].name == "1a"
    assert grid[-1].name == "3d"
    assert names(grid[1:3]) == ["1b", "1c"] and isinstance(grid[1:3], RunCollection)
    both = grid.filter(x=1) + grid.filter(x=3)
    assert len(both) == 8 and both.to_list("x") == [1] * 4 + [3] * 4
    assert grid.ids[0] == grid[0].id
    text = repr(grid)
    assert text.startswith("RunCollection(12 runs)") and "1a" in text and "more" in text


def test_constructed_from_runs(tmp_path, grid):
    runs = list(grid)[:5]
    coll = RunCollection(runs)
    assert len(coll) == 5 and coll[0] is runs[0]  # the caller's objects come back
    assert coll.filter(y="a").to_list("name") == ["1a", "2a"]
    other = Repo(tmp_path / "other")
    with Run(repo=other, name="elsewhere") as run:
        run["x"] = 7
    mixed = RunCollection(runs + [run])
    assert mixed.to_list("x") == [1, 1, 1, 1, 2, 7]
    assert mixed.filter("run.x > 1").to_list("name") == ["2a", "elsewhere"]
    assert len(RunCollection()) == 0


# -- run.get -------------------------------------------------------------------------------------
def test_run_get_lookup_order(repo):
    with Run(repo=repo, name="n1") as run:
        run["hparams"] = {"lr": 0.1, "layers": [4, 8]}
        run["status"] = "param-status"
        run.track(1.5, name="loss", context={"subset": "val"})
        run.track(2.5, name="loss", context={"subset": "train"})
        run.track(3.0, name="acc", context={"fold": 1})
    run = repo.get_run(run.id)
    assert run_get(run, "hparams.lr") == 0.1
    assert run_get(run, "hparams.layers.1") == 8
    assert run_get(run, "status") == "param-status"  # params first
    assert run_get(run, "name") == "n1"
    assert run_get(run, "run_id") == run.id
    assert run_get(run, "loss[subset=val].last") == 1.5
    assert run_get(run, "acc.last") == 3.0
    assert run_get(run, "acc[fold=1].max") == 3.0
    with pytest.raises(MatchError, match="subset"):
        run_get(run, "loss.last")
    with pytest.raises(KeyError, match="hparams.lr"):
        run_get(run, "hparams.lrr")
    assert run_get(run, "nope", None) is None
    assert run_get(run, "nope", default=lambda r: r.name) == "n1"
    assert repo.query().to_list("hparams.lr") == [run_get(run, "hparams.lr")]


def test_run_methods_are_wired(repo):
    @dataclasses.dataclass
    class Cfg:
        lr: float = 0.5

    with Run(repo=repo) as run:
        run["lr"] = 0.25
    run = repo.query().typed(Cfg).with_impl(lambda d: str(d))[0]
    assert run.get("lr") == 0.25 and run.get("nope", 3) == 3
    assert run.cfg.lr == 0.25 and run.impl == str(run.artifacts_dir)


# -- typed configs and implementations -------------------------------------------------------------
@dataclasses.dataclass
class Model:
    hidden: int = 128
    kind: str = "lstm"


@dataclasses.dataclass
class Config:
    x: int = 0
    y: str = ""
    model: Model = dataclasses.field(default_factory=Model)
    dropout: float = 0.3


def test_typed_configs(grid):
    from omegaconf import OmegaConf

    typed = grid.typed(Config)
    run = typed[0]
    cfg = run_cfg(run)
    assert OmegaConf.get_type(cfg) is Config
    assert cfg.model.hidden == 512 and cfg.x == 1 and cfg.dropout == 0.3
    assert run_get(run, "dropout") == 0.3  # the config's default
    assert typed.filter(x=2)[0] is typed.filter(y="a")[1]  # derived collections share Run objects
    assert typed.to_list("dropout") == [0.3] * 12
    with pytest.raises(KeyError):
        grid.to_list("dropout")  # untyped runs have no such key
    assert OmegaConf.get_type(run_cfg(grid[0])) is dict


def test_with_impl_is_lazy_and_built_once(grid):
    calls = []

    class Analyzer:
        def __init__(self, artifacts_dir: Path, cfg=None):
            calls.append(artifacts_dir)
            self.cfg = cfg
            self.score = 42

    runs = grid.typed(Config).with_impl(Analyzer)
    assert calls == []
    run = runs[3]  # "1d": model.hidden 256
    impl = run_impl(run)
    assert run_impl(run) is impl and len(calls) == 1
    assert impl.cfg.model.hidden == 256 and calls[0] == run.artifacts_dir
    assert runs.to_list("score")[:2] == [42, 42]  # impl attributes are keys too
    one_arg = grid.with_impl(lambda d: ("impl", d))
    assert run_impl(one_arg[0])[0] == "impl"
    with pytest.raises(AttributeError, match="with_impl"):
        run_impl(grid[0])


# -- property: filter == a plain list comprehension -----------------------------------------------
values = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "c"]), st.sampled_from([0.5, 1.5]),
                   st.lists(st.integers(0, 2), max_size=2))
param_sets = st.lists(st.dictionaries(st.sampled_from(["p", "q", "r"]), values, max_size=3), min_size=1, max_size=8)
criteria_values = st.one_of(
    st.integers(-3, 3), st.sampled_from(["a", "b"]),
    st.tuples(st.integers(-3, 3), st.integers(-3, 3)),
    st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["b", "c"])),
    st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["a", "c"])), max_size=3),
)


def plain_match(stored, crit) -> bool:
    missing = stored is _MISSING
    if missing:
        return False
    if isinstance(crit, (list, tuple)) and isinstance(stored, list):
        return stored == list(crit)
    if isinstance(crit, tuple):
        lo, hi = crit
        if type(stored) not in (int, float) and type(stored) is not type(lo):
            return False
        try:
            return lo <= stored <= hi
        except TypeError:
            return False
    if isinstance(crit, list):
        return any(type(stored) in (int, float) and type(c) in (int, float) and stored == c
                   or type(stored) is str and stored == c for c in crit)
    return type(stored) is type(crit) and stored == crit or (
        type(stored) in (int, float) and type(crit) in (int, float) and stored == crit)


_MISSING = object()


@settings(max_examples=60, deadline=None)
@given(param_sets, st.dictionaries(st.sampled_from(["p", "q", "r"]), criteria_values, min_size=1, max_size=2))
def test_filter_equals_list_comprehension(params, crit):
    path = Path(tempfile.mkdtemp())
    try:
        repo = Repo(path / "repo")
        for p in params:
            run = Run(repo=repo)
            for k, v in p.items():
                run[k] = v
            run.close()
        runs = repo.query()
        present = {k for p in params for k in p}
        if not set(crit) <= present:
            with pytest.raises(KeyError):
                runs.filter(**crit)
            return
        expected = [r.id for r in runs if all(plain_match(r.params.get(k, _MISSING), v) for k, v in crit.items())]
        assert runs.filter(**crit).ids == expected
        assert runs.exclude(**crit).ids == [r.id for r in runs if r.id not in expected]
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_docs_examples_run():
    import doctest

    path = Path(__file__).resolve().parents[1] / "docs" / "analysis.md"
    result = doctest.testfile(str(path), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 20 and result.failed == 0
