"""Losses and metrics of property training: a missing label (NaN) adds neither loss nor gradient."""

import numpy as np
import pytest
import torch

from se3mol.targets import parse_target_spec
from se3mol.training.metrics import masked_l1, regression_metrics


def test_missing_labels_give_neither_loss_nor_gradient():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = torch.tensor([[2.0, float("nan")], [1.0, 5.0]])
    scale = torch.tensor([1.0, 2.0])
    loss = masked_l1(pred, y, scale, torch.tensor([0, 1]), 2)
    # target 0: (1 + 2) / 2 = 1.5; target 1: only molecule 2, |4 - 5| / 2 = 0.5; mean 1.0
    assert loss.detach().item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 1] == 0
    m = regression_metrics(pred.detach(), y, [parse_target_spec("a"), parse_target_spec("b")])
    assert m["b"]["n"] == 1 and m["a"]["mae"] == pytest.approx(1.5) and m["a"]["rmse"] == pytest.approx(np.sqrt(2.5))
