"""PyTorch models with scikit-learn's contract, so the trainer, cross-validation, tuning,
evaluation and serving take them like any estimator:
``model="mloop.training.torch_models.TorchMLPClassifier"`` (or ``TorchMLPRegressor``).

A multi-layer perceptron over mloop's preprocessed inputs (scaled numbers, one-hot
categories), trained with Adam on mini-batches, on the CPU. Needs the ``torch`` extra
(``pip install 'mloop[torch]'``: torch 2.13, the CPU build). The fitted network is kept as its
``state_dict``, so a pickled model is plain tensors and loads wherever torch is installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from mloop.core.errors import InvalidInput


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the extra is installed where tests run
        raise InvalidInput(
            "PyTorch models need the torch extra: pip install 'mloop[torch]'"
        ) from exc
    return torch


class _TorchMLP(BaseEstimator):  # type: ignore[misc]
    def __init__(
        self,
        hidden: tuple[int, ...] = (64, 32),
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state

    def check_params(self) -> None:
        """Refuse bad hyper-parameters (the trainer calls this before any compute)."""
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise InvalidInput(f"hidden must list layer sizes of at least 1, not {self.hidden}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InvalidInput("epochs and batch_size must be at least 1, and lr above 0")

    def _network(self, inputs: int, outputs: int) -> Any:
        torch = _torch()
        layers: list[Any] = []
        width = inputs
        for size in self.hidden:
            layers += [torch.nn.Linear(width, int(size)), torch.nn.ReLU()]
            width = int(size)
        layers.append(torch.nn.Linear(width, outputs))
        return torch.nn.Sequential(*layers)

    def _train(self, X: Any, target: Any, outputs: int, loss: Any) -> None:
        torch = _torch()
        self.check_params()
        generator = torch.Generator().manual_seed(
            int(self.random_state) if self.random_state is not None else 0
        )
        torch.manual_seed(int(self.random_state) if self.random_state is not None else 0)
        features = torch.as_tensor(np.asarray(X, dtype=np.float32))
        self.n_features_in_ = features.shape[1]
        network = self._network(features.shape[1], outputs)
        optimizer = torch.optim.Adam(
            network.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        with torch.inference_mode(False):
            for _ in range(self.epochs):
                order = torch.randperm(len(features), generator=generator)
                for start in range(0, len(features), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    optimizer.zero_grad()
                    loss(network(features[rows]), target[rows]).backward()
                    optimizer.step()
        self.network_ = network.eval()

    def _forward(self, X: Any) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            out = self.network_(torch.as_tensor(np.asarray(X, dtype=np.float32)))
        found: np.ndarray = out.numpy()
        return found

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if "network_" in state:  # plain tensors: no pickled torch module classes
            state["network_"] = {
                k: v.detach().cpu().numpy() for k, v in state["network_"].state_dict().items()
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.get("network_")
        self.__dict__.update(state)
        if isinstance(weights, dict):
            torch = _torch()
            outputs = weights[max(weights, key=lambda k: int(k.split(".")[0]))].shape[0]
            network = self._network(int(state["n_features_in_"]), int(outputs))
            network.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
            self.network_ = network.eval()


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):  # type: ignore[misc]
    """A multi-layer perceptron classifier (cross-entropy), in PyTorch."""

    def fit(self, X: Any, y: Any) -> TorchMLPClassifier:
        torch = _torch()
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self._train(
            X,
            torch.as_tensor(codes, dtype=torch.long),
            len(self.classes_),
            torch.nn.CrossEntropyLoss(),
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        logits = self._forward(X)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        found: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
        return found

    def predict(self, X: Any) -> np.ndarray:
        found: np.ndarray = self.classes_[self._forward(X).argmax(axis=1)]
        return found


class TorchMLPRegressor(RegressorMixin, _TorchMLP):  # type: ignore[misc]
    """A multi-layer perceptron regressor (mean squared error on the standardized target)."""

    def fit(self, X: Any, y: Any) -> TorchMLPRegressor:
        torch = _torch()
        values = np.asarray(y, dtype=np.float32)
        self.y_mean_, self.y_scale_ = float(values.mean()), float(values.std() or 1.0)
        target = torch.as_tensor((values - self.y_mean_) / self.y_scale_).reshape(-1, 1)
        self._train(X, target, 1, torch.nn.MSELoss())
        return self

    def predict(self, X: Any) -> np.ndarray:
        found: np.ndarray = self._forward(X)[:, 0] * self.y_scale_ + self.y_mean_
        return found
