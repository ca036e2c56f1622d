"""RunstoreLogger with a real Lightning Trainer (both packages), a 2-layer MLP on CPU."""

import logging

import pytest
import torch

from runstore import Repo
from tests.integrations.conftest import curve


def _module_class(pl):
    class MLP(pl.LightningModule):
        def __init__(self, lr=0.05, hidden=8):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return MLP


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = x.sum(1, keepdim=True)
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(ds, batch_size=8), torch.utils.data.DataLoader(ds, batch_size=16)


@pytest.mark.parametrize("package", ["lightning.pytorch", "pytorch_lightning"])
def test_trainer_logs_params_curves_and_status(tmp_path, package):
    import importlib

    pl = importlib.import_module(package)
    integ = importlib.import_module(
        "runstore.integrations." + ("lightning" if package == "lightning.pytorch" else "pytorch_lightning"))
    logger = integ.RunstoreLogger(repo=tmp_path / "repo", experiment="mlp", name=package, log_checkpoints=True)
    train, val = _loaders()
    trainer = pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, accelerator="cpu",
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path / "out")
    trainer.fit(_module_class(pl)(lr=0.05), train, val)

    run = Repo(tmp_path / "repo").get_run(logger.version)
    assert run.status == "finished"
    assert run.experiment == "mlp" and run.name == package
    assert run["hparams.lr"] == 0.05 and run["hparams.hidden"] == 8
    steps, values = curve(run, "loss", {"subset": "train"})
    assert steps == list(range(8))  # 4 batches x 2 epochs, every step logged
    assert all(v > 0 for v in values)
    val_steps, _ = curve(run, "loss", {"subset": "val"})
    assert val_steps == [3, 7]  # once per epoch, at the global step
    assert list(run.sequence("loss", {"subset": "train"}).epochs) == [0.0] * 4 + [1.0] * 4
    assert ("epoch", {}) not in run.sequences()
    ckpts = run.artifacts  # one file per epoch (the callback keeps the latest on disk)
    assert [a["kind"] for a in ckpts] == ["checkpoint", "checkpoint"]
    assert [a["name"] for a in ckpts] == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt"]


def test_failed_training_marks_the_run_failed(tmp_path):
    import lightning.pytorch as pl

    from runstore.integrations.lightning import RunstoreLogger

    class Boom(_module_class(pl)):
        def training_step(self, batch, i):
            if self.global_step == 2:
                raise RuntimeError("diverged")
            return super().training_step(batch, i)

    logger = RunstoreLogger(repo=tmp_path / "repo")
    trainer = pl.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                         enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(RuntimeError, match="diverged"):
        trainer.fit(Boom(), _loaders()[0])
    run = Repo(tmp_path / "repo").get_run(logger.version)
    assert run.status == "failed"
    assert curve(run, "loss", {"subset": "train"})[0] == [0, 1]


def test_a_tracker_error_never_kills_training(tmp_path, caplog):
    import lightning.pytorch as pl

    from runstore.integrations.lightning import RunstoreLogger

    logger = RunstoreLogger(repo=tmp_path / "repo")
    run = logger.experiment

    def broken(*a, **k):
        raise OSError("disk gone")

    run.track = broken
    trainer = pl.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                         enable_checkpointing=False, default_root_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="runstore.integrations"):
        trainer.fit(_module_class(pl)(), _loaders()[0])
    assert trainer.global_step == 4  # training ran to the end
    warnings = [r for r in caplog.records if r.name == "runstore.integrations" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "training continues" in warnings[0].getMessage()
