"""What every adapter shares: prefix -> context, params cleaning, install hints."""

import importlib
import sys
from argparse import Namespace

import pytest
from omegaconf import OmegaConf

from runstore.errors import ConfigError
from runstore.integrations import split_prefix
from runstore.integrations._common import clean_params, prefix_map


@pytest.mark.parametrize("name,expected", [
    ("train_loss", ("loss", {"subset": "train"})),
    ("val/loss", ("loss", {"subset": "val"})),
    ("valid_acc", ("acc", {"subset": "val"})),
    ("eval_loss", ("loss", {"subset": "val"})),
    ("test-acc", ("acc", {"subset": "test"})),
    ("lr-SGD", ("lr-SGD", {})),
    ("train_", ("train_", {})),
    ("loss", ("loss", {})),
])
def test_split_prefix(name, expected):
    assert split_prefix(name) == expected


def test_prefix_map_accepts_own_prefixes_and_refuses_nonsense():
    assert split_prefix("dev_loss", prefix_map({"DEV": "val"})) == ("loss", {"subset": "val"})
    assert split_prefix("val_loss", prefix_map(False)) == ("val_loss", {})
    with pytest.raises(ConfigError, match="context_from_prefix"):
        prefix_map("val")


def test_clean_params_plain_containers():
    cfg = OmegaConf.create({"model": {"lr": 0.1, "layers": [1, 2]}})
    assert clean_params(cfg) == {"model": {"lr": 0.1, "layers": [1, 2]}}
    assert clean_params(Namespace(a=1, b="x")) == {"a": 1, "b": "x"}
    assert clean_params({"a.b": float("nan"), "t": object}) == {"a_b": "nan", "t": str(object)}


def test_missing_framework_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # makes `import keras` fail
    monkeypatch.delitem(sys.modules, "runstore.integrations.keras", raising=False)
    with pytest.raises(ImportError, match=r"pip install keras"):
        importlib.import_module("runstore.integrations.keras")
