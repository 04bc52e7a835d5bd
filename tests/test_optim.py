import math

import pytest
import torch

from vla_razor.optim import StackedAdamW, lr_multiplier


def test_lr_multiplier_schedules():
    assert lr_multiplier(0, 100, 10, "constant") == pytest.approx(0.1)
    assert lr_multiplier(9, 100, 10, "constant") == 1.0
    assert lr_multiplier(50, 100, 10, "constant") == 1.0
    assert lr_multiplier(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_multiplier(55, 100, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_multiplier(100, 100, 10, "cosine") == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier(0, 10, 0, "linear")


@pytest.mark.parametrize("max_grad_norm", [None, 0.05])
def test_stacked_adamw_matches_torch_adamw_per_model(max_grad_norm):
    torch.manual_seed(0)
    lrs = torch.tensor([1e-2, 3e-3])
    init = {"w": torch.randn(2, 4, 3), "b": torch.randn(2, 4)}
    stacked = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = StackedAdamW(stacked, weight_decay=0.01, max_grad_norm=max_grad_norm)
    singles = [{k: v[m].clone().requires_grad_(True) for k, v in init.items()} for m in range(2)]
    torch_opts = [torch.optim.AdamW(list(s.values()), lr=lrs[m].item(), weight_decay=0.01) for m, s in enumerate(singles)]
    x = torch.randn(5, 3)
    for _ in range(4):
        loss = sum(((x @ stacked["w"][m].T + stacked["b"][m]) ** 2).sum() for m in range(2))
        loss.backward()
        opt.step(lrs)
        for m, (s, o) in enumerate(zip(singles, torch_opts)):
            ((x @ s["w"].T + s["b"]) ** 2).sum().backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(list(s.values()), max_grad_norm)
            o.step()
            o.zero_grad()
    for m in range(2):
        for k in init:
            torch.testing.assert_close(stacked[k][m], singles[m][k], rtol=1e-5, atol=1e-6)
