import math

import pytest
import torch

from vla_razor.optim import MasterWeightAdamW, OptimConfig, StackedAdamW, lr_multiplier, make_adamw


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
        ("llm", {"sft.optim.master_weights": "float32"}, "sft.optim.master_weights"),
    ],
)
def test_a_field_the_domain_does_not_use_is_refused_by_name(cls, override, field):
    from vla_razor.config import ConfigError, load_config
    from vla_razor.llm.config import LLMConfig
    from vla_razor.robot.config import RobotConfig

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(RobotConfig if cls == "robot" else LLMConfig, None, override)


def _steps(optimizer, params, grads) -> None:
    for g in grads:
        for p, gp in zip(params, g):
            p.grad = gp.to(p.dtype)
        optimizer.step()


def test_master_weight_adamw_is_adamw_on_float32_and_keeps_a_float32_master_for_bf16():
    """On float32 parameters it is torch's AdamW exactly; on bf16 ones the master follows AdamW on the rounded
    gradients (to float32 rounding) and the parameter is the master rounded to bf16 after every step, where bf16
    AdamW loses the updates smaller than half a bf16 step (lr 1e-5 on weights ~1: all of them)."""
    gen = torch.Generator().manual_seed(0)
    init = [1 + 0.5 * torch.rand(17, 5, generator=gen), 1 + 0.5 * torch.rand(9, generator=gen)]  # bf16 step 2^-7
    grads = [[torch.randn(17, 5, generator=gen), torch.randn(9, generator=gen)] for _ in range(6)]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    _steps(torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1), ref, grads)
    _steps(MasterWeightAdamW(mine, lr=1e-2, weight_decay=0.1, chunk_elements=10), mine, grads)
    for a, b in zip(ref, mine):
        assert torch.equal(a, b)

    low = [torch.nn.Parameter(t.bfloat16()) for t in init]
    optimizer = make_adamw(low, OptimConfig(lr=1e-5, master_weights="float32"))
    _steps(optimizer, low, grads)
    rounded = [torch.nn.Parameter(t.bfloat16().float()) for t in init]  # float32 AdamW from the same bf16 start
    _steps(torch.optim.AdamW(rounded, lr=1e-5, weight_decay=0.0), rounded, [[g.bfloat16() for g in gs] for gs in grads])
    for p, r in zip(low, rounded):
        master = optimizer.state[p]["master"]
        assert p.dtype == torch.bfloat16 and master.dtype == torch.float32
        assert optimizer.state[p]["exp_avg"].dtype == torch.float32
        torch.testing.assert_close(master, r.detach(), rtol=0, atol=1e-7)
        assert torch.equal(p, master.bfloat16())
    plain = [torch.nn.Parameter(t.bfloat16()) for t in init]
    _steps(make_adamw(plain, OptimConfig(lr=1e-5)), plain, grads)
    assert all(torch.equal(p, t.bfloat16()) for p, t in zip(plain, init))  # every update rounded away


def test_master_weights_and_moments_resume_from_the_training_state(tmp_path):
    """The master copy and float32 moments are saved with the training state and restored: steps after a resume
    equal the steps of a run that never stopped."""
    from vla_razor.training_state import load_training_state, save_training_state

    gen = torch.Generator().manual_seed(1)
    grads = [[torch.randn(8, 4, generator=gen).bfloat16()] for _ in range(6)]
    start = torch.randn(8, 4, generator=gen)

    def model():
        m = torch.nn.Linear(4, 8, bias=False).bfloat16()
        with torch.no_grad():
            m.weight.copy_(start)
        return m

    whole = model()
    _steps(MasterWeightAdamW(whole.parameters(), lr=1e-3), [whole.weight], grads)
    first = model()
    opt = MasterWeightAdamW(first.parameters(), lr=1e-3)
    _steps(opt, [first.weight], grads[:3])
    save_training_state(tmp_path / "state.safetensors", first, opt, {"step": 3})
    second = model()
    opt2 = MasterWeightAdamW(second.parameters(), lr=1e-3)
    assert load_training_state(tmp_path / "state.safetensors", second, opt2) == {"step": 3}
    assert opt2.state[second.weight]["master"].dtype == torch.float32
    _steps(opt2, [second.weight], grads[3:])
    assert torch.equal(second.weight, whole.weight)


def test_master_weights_are_refused_under_torchrun():
    from vla_razor.config import ConfigError
    from vla_razor.distributed import Distributed, check_distributed

    ctx = Distributed(world_size=2)
    with pytest.raises(ConfigError, match="optim.master_weights"):
        check_distributed(OptimConfig(batch_size=8, master_weights="float32"), ctx)
