"""The EMA of G's weights: it follows its model at the decay rate."""

import pytest
import torch
from torch import nn

from facegan.ema import EMA


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([v.detach().float().flatten() for v in module.state_dict().values()])


def test_the_ema_follows_its_model_at_the_decay_rate():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    start = flat(ema.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=1000)  # late: the full decay applies
    assert torch.allclose(flat(ema.model), start + 0.1, atol=1e-6)
    assert ema.effective_decay(0) == pytest.approx(0.1)  # early steps forget the init fast


def test_the_ema_covers_batchnorm_statistics_and_copies_its_counter():
    model = nn.BatchNorm1d(2)
    ema = EMA(model, decay=0.5)
    model(torch.randn(16, 2) * 3 + 5)  # train mode: the running statistics move
    ema.update(model, step=1000)
    torch.testing.assert_close(ema.model.running_mean, model.running_mean / 2)
    torch.testing.assert_close(ema.model.running_var, (1 + model.running_var) / 2)
    assert ema.model.num_batches_tracked.item() == 1
    assert not any(p.requires_grad for p in ema.model.parameters())
