import os

import pytest

# Keras 3 on the torch backend (installed for the other integrations anyway);
# set before any test imports keras.
os.environ.setdefault("KERAS_BACKEND", "torch")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integrations/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integrations)


def curve(run, name, context=None):
    seq = run.sequence(name, context)
    return list(seq.steps), list(seq.values)
