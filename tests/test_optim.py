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
    torch_opts = [
        torch.optim.AdamW(list(s.values()), lr=lrs[m].item(), weight_decay=0.01) for m, s in enumerate(singles)
    ]
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


def test_one_optim_config_keeps_each_domains_defaults():
    """Robot and LLM share OptimConfig; each section keeps the defaults it had when each domain had its own class."""
    from vla_razor.llm.config import LLMConfig
    from vla_razor.robot.config import RobotConfig

    robot, llm = RobotConfig(), LLMConfig()
    for section in (robot.sft.optim, robot.rl.optim):
        assert (section.lr, section.batch_size, section.warmup_steps, section.micro_batch_size) == (3e-5, 16, 10, None)
    p = robot.pretrain.optim
    assert (p.lr, p.batch_size, p.epochs, p.warmup_steps, p.schedule) == (1e-3, 32, 20, 50, "cosine")
    for section in (llm.sft.optim, llm.simpo.optim):
        assert (section.lr, section.batch_size, section.warmup_steps, section.micro_batch_size) == (3e-5, 32, 50, 8)
    assert (llm.grpo.optim.lr, llm.grpo.optim.micro_batch_size, llm.grpo.optim.image_shift) == (2e-5, 8, 0)


@pytest.mark.parametrize(
    "cls, override, field",
    [
        ("robot", {"sft.optim.micro_batch_size": 4}, "sft.optim.micro_batch_size"),
        ("robot", {"rl.optim.micro_batch_size": 4}, "rl.optim.micro_batch_size"),
        ("llm", {"grpo.optim.image_shift": 2}, "grpo.optim.image_shift"),
        ("llm", {"simpo.optim.micro_batch_size": None}, "simpo.optim.micro_batch_size"),
    ],
)
def test_a_field_the_domain_does_not_use_is_refused_by_name(cls, override, field):
    from vla_razor.config import ConfigError, load_config
    from vla_razor.llm.config import LLMConfig
    from vla_razor.robot.config import RobotConfig

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(RobotConfig if cls == "robot" else LLMConfig, None, override)
