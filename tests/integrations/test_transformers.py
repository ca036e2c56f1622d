"""RunstoreCallback with a real Hugging Face Trainer: a tiny BERT built from a
config (random weights, nothing downloaded)."""

import torch

from runstore import Repo
from tests.integrations.conftest import curve


class _Data(torch.utils.data.Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 50, (n, 8), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def test_trainer_logs_args_config_curves_and_summary(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from runstore.integrations.transformers import RunstoreCallback

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=4,
                             per_device_eval_batch_size=8, learning_rate=1e-3, logging_steps=1,
                             eval_strategy="epoch", save_strategy="epoch", report_to="none", use_cpu=True,
                             disable_tqdm=True, seed=0)
    callback = RunstoreCallback(repo=tmp_path / "repo", experiment="bert", log_checkpoints=True)
    trainer = Trainer(model=model, args=args, train_dataset=_Data(), eval_dataset=_Data(8), callbacks=[callback])
    trainer.train()

    run = Repo(tmp_path / "repo").get_run(callback.run_id)
    assert run.status == "finished"
    assert run["args.learning_rate"] == 1e-3 and run["args.num_train_epochs"] == 2
    assert run["model_config.hidden_size"] == 16 and run["model_config.model_type"] == "bert"
    assert run["model.class"] == "BertForSequenceClassification"
    steps, _ = curve(run, "loss")  # the Trainer logs the training loss as plain "loss"
    assert steps == list(range(1, 9))
    eval_steps, eval_values = curve(run, "loss", {"subset": "val"})
    assert eval_steps == [4, 8] and all(v > 0 for v in eval_values)
    assert run["summary.train_runtime"] > 0 and "train_loss" in run["summary"]
    names = {name for name, _ in run.sequences()}
    assert not names & {"train_runtime", "total_flos", "runtime", "samples_per_second", "epoch"}
    assert sorted(a["name"] for a in run.artifacts) == ["checkpoint-4", "checkpoint-8"]
