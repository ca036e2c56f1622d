"""A real NumPy training pipeline: softmax regression or a one-hidden-layer MLP on a spiral.

Run the experiment (two trials x 3 repeats) from anywhere::

    python examples/experiment/pipeline.py

Running it again skips the repeats that finished; kill it halfway (Ctrl-C) and run
it again to see only the missing repeats run. Then ``python examples/analyze.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runstore.experiment import Checkpoint, EarlyStopping, Experiment, MetricsCSV, Pipeline


def make_spiral(points_per_class: int, noise: float, seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The classic interleaved spiral: not linearly separable, easy for a small MLP."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label in range(classes):
        radius = np.linspace(0.05, 1.0, points_per_class)
        angle = np.linspace(label * 4.0, (label + 1) * 4.0, points_per_class) + rng.normal(0, noise, points_per_class)
        xs.append(np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]))
        ys.append(np.full(points_per_class, label))
    return np.concatenate(xs), np.concatenate(ys)


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean())
    grad = probs
    grad[np.arange(n), y] -= 1.0
    return loss, grad / n


class SpiralClassifier(Pipeline):
    """Mini-batch SGD; ``hidden: 0`` is softmax regression, ``hidden: H`` an MLP with tanh."""

    def __init__(self, config, run, seed):
        super().__init__(config, run, seed)
        data = config.data
        x, y = make_spiral(data.points_per_class, data.noise, data.seed)
        order = np.random.default_rng(data.seed).permutation(len(y))  # a fixed split for every repeat
        x, y = x[order], y[order]
        n_test = n_val = len(y) // 5
        self.x_test, self.y_test = x[:n_test], y[:n_test]
        self.x_val, self.y_val = x[n_test:n_test + n_val], y[n_test:n_test + n_val]
        self.x_train, self.y_train = x[n_test + n_val:], y[n_test + n_val:]
        classes = int(y.max()) + 1
        sizes = [2, config.hidden, classes] if config.hidden else [2, classes]
        # self.rng is seeded with the repeat's seed: each repeat starts from its own weights.
        self.weights = [self.rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in zip(sizes, sizes[1:])]
        self.biases = [np.zeros(b) for b in sizes[1:]]
        stop = config.early_stopping
        self.register_callback(EarlyStopping(stop.metric, stop.patience, stop.min_delta_percent, mode="min"))
        self.register_callback(MetricsCSV())
        self.register_callback(Checkpoint(config.checkpoint_every, save=self.save_weights, filename="weights-epoch{epoch:03d}.npz"))

    def save_weights(self, path, pipeline):
        np.savez(path, *self.weights, *self.biases)

    def forward(self, x):
        activations = [x]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = np.tanh(x)
            activations.append(x)
        return activations

    def evaluate(self, x, y):
        logits = self.forward(x)[-1]
        loss, _ = softmax_cross_entropy(logits, y)
        return loss, float((logits.argmax(axis=1) == y).mean())

    @Pipeline.run_step
    def run(self):
        for epoch in self.epochs(self.config.epochs):
            self.run_epoch(epoch)
        self.run_metrics["test_loss"], self.run_metrics["test_acc"] = self.evaluate(self.x_test, self.y_test)
        self.run_metrics["epochs_trained"] = len(self.history)

    @Pipeline.epoch_step
    def run_epoch(self, epoch):
        cfg = self.config
        order = self.rng.permutation(len(self.y_train))
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            activations = self.forward(self.x_train[batch])
            loss, grad = softmax_cross_entropy(activations[-1], self.y_train[batch])
            losses.append(loss)
            for i in reversed(range(len(self.weights))):  # backpropagation
                grad_w = activations[i].T @ grad + cfg.weight_decay * self.weights[i]
                grad_b = grad.sum(axis=0)
                if i > 0:
                    grad = (grad @ self.weights[i].T) * (1 - activations[i] ** 2)
                self.weights[i] -= cfg.lr * grad_w
                self.biases[i] -= cfg.lr * grad_b
        self.epoch_metrics["train_loss"] = float(np.mean(losses))
        self.epoch_metrics["val_loss"], self.epoch_metrics["val_acc"] = self.evaluate(self.x_val, self.y_val)


if __name__ == "__main__":
    Experiment.from_dir(Path(__file__).parent, SpiralClassifier).run()
