"""Configs: YAML files merged in order, dot-list overrides, schema errors, multiply, insert_value."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import MISSING, DictConfig, OmegaConf

from runstore.errors import ConfigError, RunstoreError
from runstore.experiment import insert_value, load_config, multiply
from runstore.experiment.config import parse_override, split_sweep, to_container


@dataclass
class Model:
    layers: int = 2
    width: int = 64
    activation: str = "relu"


@dataclass
class Config:
    lr: float = 1e-3
    epochs: int = 10
    model: Model = field(default_factory=Model)
    tags: List[str] = field(default_factory=list)
    note: Optional[str] = None
    run_name: str = "m${model.layers}-lr${lr}"


@dataclass
class Required:
    dataset: str = MISSING
    epochs: int = 3


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- merging and overrides ------------------------------------------------------------------
def test_defaults_only():
    cfg = load_config(schema=Config)
    assert cfg.lr == 1e-3 and cfg.model.layers == 2 and cfg.run_name == "m2-lr0.001"


def test_files_merge_in_order_then_overrides_win(tmp_path):
    a = write(tmp_path, "a.yaml", "lr: 0.1\nepochs: 5\nmodel:\n  layers: 3\n  width: 16\n")
    b = write(tmp_path, "b.yaml", "lr: 0.2\nmodel:\n  layers: 4\n")
    cfg = load_config(a, b, schema=Config, overrides=["model.width=8", "epochs=7"])
    assert cfg.lr == 0.2  # b wins over a
    assert cfg.model.layers == 4  # b, nested
    assert cfg.model.width == 8  # override wins over a
    assert cfg.epochs == 7
    assert cfg.model.activation == "relu"  # untouched default survives nested merges
    reverse = load_config(b, a, schema=Config)
    assert reverse.lr == 0.1 and reverse.model.layers == 3


def test_override_value_types(tmp_path):
    cfg = load_config(schema=Config, overrides=["tags=[a,b]", "note=null", "lr=1e-2", "model.activation='1'"])
    assert list(cfg.tags) == ["a", "b"]
    assert cfg.note is None
    assert cfg.lr == pytest.approx(0.01)
    assert cfg.model.activation == "1"


def test_untyped_config_accepts_any_key(tmp_path):
    a = write(tmp_path, "a.yaml", "x: 1\nnested: {y: 2}\n")
    cfg = load_config(a, overrides=["nested.z=3", "w=hello world"])
    assert to_container(cfg) == {"x": 1, "nested": {"y": 2, "z": 3}, "w": "hello world"}


def test_interpolations_are_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNSTORE_TEST_NOTE", "from-env")
    a = write(tmp_path, "a.yaml", "note: ${oc.env:RUNSTORE_TEST_NOTE}\n")
    cfg = load_config(a, schema=Config, overrides=["model.layers=6"])
    plain = to_container(cfg)
    assert plain["run_name"] == "m6-lr0.001"
    assert plain["note"] == "from-env"
    assert "${" not in repr(plain)


# -- schema errors name the field and the source ------------------------------------------------
def test_wrong_type_in_file_names_field_and_file(tmp_path):
    bad = write(tmp_path, "bad.yaml", "model:\n  layers: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, schema=Config)
    message = str(info.value)
    assert "model.layers" in message and "bad.yaml" in message


def test_wrong_type_in_second_file_names_that_file(tmp_path):
    good = write(tmp_path, "good.yaml", "lr: 0.5\n")
    bad = write(tmp_path, "second.yaml", "epochs: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"second\.yaml.*'epochs'"):
        load_config(good, bad, schema=Config)


def test_scalar_where_a_section_belongs_names_the_section(tmp_path):
    bad = write(tmp_path, "flat.yaml", "model: 3\n")
    with pytest.raises(ConfigError, match=r"flat\.yaml.*'model'"):
        load_config(bad, schema=Config)


def test_unknown_field_in_file(tmp_path):
    bad = write(tmp_path, "typo.yaml", "model:\n  layerz: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, schema=Config)
    assert "model.layerz" in str(info.value) and "typo.yaml" in str(info.value)
    assert "layers" in str(info.value)  # the message lists what is known there


def test_override_errors_name_the_override():
    with pytest.raises(ConfigError, match=r"override 'lr=fast'.*'lr'"):
        load_config(schema=Config, overrides=["lr=fast"])
    with pytest.raises(ConfigError, match=r"unknown field 'optimizer'"):
        load_config(schema=Config, overrides=["optimizer=adam"])


def test_missing_required_field(tmp_path):
    a = write(tmp_path, "a.yaml", "epochs: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(a, schema=Required)
    assert "'dataset'" in str(info.value) and "a.yaml" in str(info.value)
    assert load_config(a, schema=Required, overrides=["dataset=mnist"]).dataset == "mnist"


def test_bad_interpolation_names_field_and_source(tmp_path):
    a = write(tmp_path, "interp.yaml", "note: ${model.depth}\n")
    with pytest.raises(ConfigError, match=r"'note'.*interp\.yaml"):
        load_config(a, schema=Config)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    a = write(tmp_path, "broken.yaml", "lr: 0.1\ntags: [a, b\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML at line \d+"):
        load_config(a, schema=Config)


def test_file_must_be_a_mapping_and_exist(tmp_path):
    a = write(tmp_path, "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(a)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_is_an_empty_layer(tmp_path):
    a = write(tmp_path, "empty.yaml", "")
    assert load_config(a, schema=Config).epochs == 10


def test_config_error_is_a_value_error_and_runstore_error():
    with pytest.raises(ValueError):
        load_config(schema=Config, overrides=["epochs=x"])
    with pytest.raises(RunstoreError):
        load_config(schema=Config, overrides=["epochs=x"])


@pytest.mark.parametrize("text", ["lr", "=3", "a..b=1", "a b=1", ""])
def test_malformed_overrides(text):
    with pytest.raises(ConfigError, match="override"):
        parse_override(text)


def test_parse_override_keeps_the_value_text():
    assert parse_override("model.layers=4") == ("model.layers", "4")
    assert parse_override("expr=a=b") == ("expr", "a=b")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0.1", ["0.1"]),
        ("0.1,0.01,0.001", ["0.1", "0.01", "0.001"]),
        ("[1,2],[3,4]", ["[1,2]", "[3,4]"]),
        ("'a,b',c", ["'a,b'", "c"]),
        ("{x: 1, y: 2},3", ["{x: 1, y: 2}", "3"]),
    ],
)
def test_split_sweep(value, expected):
    assert split_sweep(value) == expected


# -- multiply ----------------------------------------------------------------------------------------
def test_multiply_is_the_cartesian_product_deep_merged():
    models = [{"model": {"type": "mlp", "layers": [64, 32]}}, {"model": {"type": "cnn", "filters": [32]}}]
    rates = [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}]
    before = copy.deepcopy((models, rates))
    configs = multiply(models, rates)
    assert len(configs) == 6
    assert configs[0] == {"model": {"type": "mlp", "layers": [64, 32]}, "lr": 0.1}
    assert configs[1]["lr"] == 0.01 and configs[1]["model"]["type"] == "mlp"  # first argument varies slowest
    assert configs[5] == {"model": {"type": "cnn", "filters": [32]}, "lr": 0.001}
    assert (models, rates) == before  # inputs untouched
    configs[0]["model"]["layers"].append(1)
    assert models[0]["model"]["layers"] == [64, 32]  # results do not share structure with inputs


def test_multiply_deep_merges_nested_sections_and_later_wins():
    out = multiply([{"settings": {"lr": 0.1, "opt": "sgd"}}], [{"settings": {"lr": 0.5}}, {"settings": {"wd": 1}}])
    assert out == [{"settings": {"lr": 0.5, "opt": "sgd"}}, {"settings": {"lr": 0.1, "opt": "sgd", "wd": 1}}]


def test_multiply_accepts_omegaconf_and_single_dicts():
    out = multiply(OmegaConf.create([{"a": 1}, {"a": 2}]), {"b": 3})
    assert out == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    assert multiply() == [{}]
    assert multiply([{"a": 1}], []) == []


def test_multiply_rejects_non_fragments():
    with pytest.raises(ConfigError, match="argument 2"):
        multiply([{"a": 1}], [1, 2])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.dictionaries(st.sampled_from("abc"), st.integers()), max_size=3), max_size=3))
def test_multiply_size_and_last_writer_wins(lists):
    out = multiply(*lists)
    assert len(out) == math.prod(len(x) for x in lists)
    if out and lists:
        # the first combination takes each key from the last fragment that has it
        expected: dict = {}
        for fragments in lists:
            expected.update(fragments[0])
        assert out[0] == expected


# -- insert_value -------------------------------------------------------------------------------------
def test_insert_value_fills_every_placeholder_at_any_depth():
    config = {"lr": "?", "batch_size": 32, "opt": {"momentum": "?", "name": "sgd"}, "sched": ["?", 5, {"g": "?"}]}
    before = copy.deepcopy(config)
    out = insert_value(config, 0.001)
    assert out == {"lr": 0.001, "batch_size": 32, "opt": {"momentum": 0.001, "name": "sgd"}, "sched": [0.001, 5, {"g": 0.001}]}
    assert config == before


def test_insert_value_keeps_the_container_kind():
    base = OmegaConf.create({"learning_rate": "?", "batch_size": 32, "other": "???"})
    out = insert_value(base, 0.001)
    assert isinstance(out, DictConfig)
    assert out.learning_rate == 0.001 and out.batch_size == 32
    assert OmegaConf.is_missing(out, "other")  # OmegaConf's ??? is not our placeholder
    assert base.learning_rate == "?"


def test_insert_value_with_multiply_generates_trials():
    template = {"name": "?", "settings": {"hidden": "?"}}
    trials = [insert_value(template, h) for h in (8, 16)]
    assert trials == [{"name": 8, "settings": {"hidden": 8}}, {"name": 16, "settings": {"hidden": 16}}]
    assert len(multiply(trials, [{"repeat": 2}, {"repeat": 3}])) == 4
