"""RunstoreCallback with real Keras 3 (torch backend), a 2-layer MLP."""

import numpy as np

from runstore import Repo
from tests.integrations.conftest import curve


def test_fit_logs_batch_and_epoch_curves(tmp_path):
    import keras

    from runstore.integrations.keras import RunstoreCallback

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    y = x.sum(1, keepdims=True)
    callback = RunstoreCallback(repo=tmp_path / "repo", experiment="keras")
    model.fit(x, y, batch_size=8, epochs=3, validation_split=0.2, verbose=0, callbacks=[callback])

    run = Repo(tmp_path / "repo").get_run(callback.run_id)
    assert run.status == "finished"
    assert run["fit.epochs"] == 3 and run["optimizer.class"] == "SGD"
    assert abs(run["optimizer.learning_rate"] - 0.05) < 1e-6
    assert curve(run, "loss", {"subset": "train"})[0] == [0, 1, 2]
    assert curve(run, "mae", {"subset": "val"})[0] == [0, 1, 2]
    assert curve(run, "loss", {"subset": "train", "every": "batch"})[0] == list(range(12))  # 4 batches x 3
    assert list(run.sequence("loss", {"subset": "val"}).epochs) == [0.0, 1.0, 2.0]
