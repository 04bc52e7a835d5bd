"""The KL to the base on an experiment's fixed frames, by the chain rule over actions sampled from the base (whose
logits are computed once and stored)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.policies.openvla.kl import chain_rule_kl_terms, mean_and_se
from vla_razor.policies.openvla.policy import OpenVLAPolicy
from vla_razor.robot.evaluate import (
    EvalSpec,
    KLObservations,
    _sample_prefixes,
    evaluation_episodes,
    kl_to_base,
    new_task_specs,
    success_intervals,
    with_groups,
)
from vla_razor.robot.rl import episode_key


@pytest.fixture(scope="module")
def policies():
    torch.manual_seed(0)
    cfg = OpenVLAConfig.tiny()
    cfg.image_sizes = [32, 32] if len(cfg.image_sizes) == 2 else [32]
    base = OpenVLAPolicy.from_config(cfg, seed=0)
    other = copy.deepcopy(base)
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return base, other


def _observations(base, n: int = 5, samples: int = 3) -> KLObservations:
    rng = np.random.default_rng(0)
    size = base.config.image_sizes[0]
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    instructions = ["pick coke can"] * n
    tokens = _sample_prefixes(base, list(images), instructions, samples, seed=0)
    return KLObservations(images, instructions, tokens.numpy(), {"seed": 0})


def test_kl_is_the_chain_rule_over_actions_sampled_from_the_base(policies, tmp_path):
    """forward KL = mean over the base's sampled actions of the per-dimension KLs summed along each; the stored
    base logits give what recomputing them gives; reverse KL samples the evaluated policy; a policy is 0 from
    itself."""
    base, other = policies
    obs = _observations(base)
    assert obs.tokens.shape == (5, 3, 7) and len({tuple(t) for t in obs.tokens.reshape(-1, 7)}) > 5
    with torch.no_grad():
        batch = base.encode([im for im in obs.images for _ in range(3)], obs.instructions * 3)
        tokens = torch.as_tensor(obs.tokens).reshape(15, 7)
        terms = chain_rule_kl_terms(base.action_logits(batch, tokens), other.action_logits(batch, tokens))
    got = kl_to_base(base, other, obs, batch_size=4)
    assert obs.base_logits is not None and obs.base_logits.shape == (5, 3, 7, base.config.n_action_bins)
    per_frame = terms.view(5, 3).double().mean(1)
    assert got["forward_kl"] == pytest.approx(float(per_frame.mean()), rel=1e-4)
    assert got["forward_kl_se"] == pytest.approx(float(per_frame.std()) / 5**0.5, rel=1e-3)
    assert got["forward_kl"] > 0 and got["reverse_kl"] > 0 and 0 < got["tv"] <= 1
    obs.episodes = np.array([0, 0, 1, 1, 2])  # frames 0-1 and 2-3 from one rollout each: the error is clustered
    clustered = kl_to_base(None, other, obs)
    assert clustered["forward_kl"] == pytest.approx(got["forward_kl"])
    assert clustered["forward_kl_se"] == pytest.approx(
        mean_and_se(terms.view(5, 3), torch.tensor(obs.episodes))[1], rel=1e-3
    )
    obs.save(tmp_path / "obs.npz")
    loaded = KLObservations.load(tmp_path / "obs.npz")
    assert loaded.episodes.tolist() == [0, 0, 1, 1, 2]
    again = kl_to_base(None, other, loaded)  # the base is needed for reverse only
    assert again["forward_kl"] == pytest.approx(got["forward_kl"]) and "reverse_kl" not in again
    itself = kl_to_base(base, base, obs)
    for name in ("forward_kl", "reverse_kl", "tv"):
        assert itself[name] == pytest.approx(0.0, abs=1e-5)


def test_kl_frames_of_an_older_format_are_refused(tmp_path):
    path = tmp_path / "kl_observations.npz"
    np.savez(
        path,
        images=np.zeros((2, 8, 8, 3), np.uint8),
        instructions=np.asarray(["a", "b"]),
        tokens=np.zeros((2, 7), np.int64),
    )
    with pytest.raises(ValueError, match="older version.*delete it"):
        KLObservations.load(path)


def test_evaluation_samples_reproducibly_at_a_temperature(policies):
    """eval.temperature > 0: each row's action is drawn from its own (seed, episode identity, step) noise, so an
    evaluation is repeatable and a row's action depends neither on its batch nor on the episode's position in the
    evaluated list; temperature 0 is the greedy action."""
    from envs.rollout import ObsBatch
    from vla_razor.robot.evaluate import EvalSpec, evaluation_actor, probe_specs

    base, _ = policies
    size = base.config.image_sizes[0]
    images = np.random.default_rng(1).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    specs = probe_specs("open_drawer", 4, seed=3)

    def batch(rows: list[int], offset: int = 0) -> ObsBatch:
        return ObsBatch(
            images=images[rows],
            proprio=np.zeros((len(rows), 16), np.float32),
            instructions=["pick coke can"] * len(rows),
            steps=np.array(rows) % 2,
            episodes=np.array(rows) + offset,
            specs=[specs[r] for r in rows],
        )

    sampled = evaluation_actor(base, EvalSpec(temperature=1.0))(batch([0, 1, 2, 3]))
    np.testing.assert_array_equal(sampled, evaluation_actor(base, EvalSpec(temperature=1.0))(batch([0, 1, 2, 3])))
    np.testing.assert_array_equal(sampled[2:], evaluation_actor(base, EvalSpec(temperature=1.0))(batch([2, 3])))
    # the same episodes behind 10 others in the evaluated list (e.g. held-out pick-can placements added first)
    np.testing.assert_array_equal(sampled, evaluation_actor(base, EvalSpec(temperature=1.0))(batch([0, 1, 2, 3], 10)))
    greedy = evaluation_actor(base, EvalSpec())(batch([0, 1, 2, 3]))
    with torch.no_grad():
        expected = base.sample(base.encode(list(images), ["pick coke can"] * 4), temperature=0.0).actions
    np.testing.assert_allclose(greedy, expected, rtol=1e-6)
    assert not np.allclose(sampled, greedy)  # a random tiny model's bins are far from one-hot
    other_seed = evaluation_actor(base, EvalSpec(temperature=1.0, seed=7))(batch([0, 1, 2, 3]))
    assert not np.allclose(sampled, other_seed)
    # another episode (another env seed, or the same seed at another placement) draws other noise
    moved = [dataclasses.replace(s, seed=s.seed + 1) for s in specs]
    elsewhere = ObsBatch(
        images=images,
        proprio=np.zeros((4, 16), np.float32),
        instructions=["pick coke can"] * 4,
        steps=np.arange(4) % 2,
        episodes=np.arange(4),
        specs=moved,
    )
    assert not np.allclose(sampled, evaluation_actor(base, EvalSpec(temperature=1.0))(elsewhere))
    a, b = new_task_specs("pick_can", 1, seed=0)[0], new_task_specs("pick_can", 1, seed=1)[0]
    assert episode_key(a) != episode_key(dataclasses.replace(a, options=b.options))
    assert episode_key(a) == episode_key(dataclasses.replace(a, max_steps=3))  # a shorter cap: the same episode


def test_drawer_episodes_sample_the_same_with_other_episodes_evaluated_before_them(policies):
    """Adding held-out pick-can episodes to an evaluation (they come first in its list) leaves every sampled drawer
    episode as it was, action for action: its noise follows the episode, not its index in the list."""
    from envs.rollout import ParallelRollout
    from vla_razor.robot.evaluate import EvalSpec, evaluation_actor, probe_specs

    base, _ = policies
    drawers = probe_specs("open_drawer", 2, seed=1000, max_steps=3)
    heldout = new_task_specs("pick_can", 2, seed=1001, max_steps=2)
    actor = evaluation_actor(base, EvalSpec(temperature=1.0))
    with ParallelRollout(0, camera_size=base.config.image_sizes[0]) as rollout:
        alone = rollout.run(actor, drawers, record=True)
        behind = rollout.run(actor, [*heldout, *drawers], record=True)[len(heldout) :]
    for first, second in zip(alone, behind):
        assert first.spec == second.spec and first.steps == second.steps == 3
        np.testing.assert_array_equal(first.trajectory.actions, second.trajectory.actions)


def test_kl_frames_made_in_another_world_are_refused(policies, tmp_path):
    """The KL frames are stamped with everything that shaped the base's rollouts; a set made with another physics,
    norm_stats key or placement region (or by a version that did not record them) is refused, naming the field, and
    one made with these settings is used."""
    from vla_razor.config import ConfigError
    from vla_razor.robot.evaluate import KL_OBSERVATIONS, Evaluator
    from vla_razor.robot.stages import load_robot_config

    base, _ = policies
    cfg = load_robot_config(
        None, {"runs_dir": tmp_path, "experiment": "e", "base": tmp_path / "base", "workers": 0, "camera_size": 32}
    )
    cfg.experiment_dir.mkdir(parents=True)
    evaluator = Evaluator(cfg, base)
    wanted = evaluator.kl_settings()
    assert wanted["sim_backend"] == "physx_cpu" and wanted["dataset_name"] == "vla_razor_embedded"
    obs = _observations(base)
    path = cfg.experiment_dir / KL_OBSERVATIONS
    for changed, said in (
        ({"sim_backend": "physx_cuda"}, "sim_backend 'physx_cuda' there, 'physx_cpu' here"),
        ({"dataset_name": "fractal20220817_data"}, "dataset_name 'fractal20220817_data' there"),
        ({"dataset_name": None}, "dataset_name 'not recorded' there"),
        ({"region": [[-0.15, -0.05], [-0.08, 0.08]]}, r"region \[\[-0.15, -0.05\], \[-0.08, 0.08\]\] there, None here"),
    ):
        settings = {**wanted, **changed}
        obs.settings = {k: v for k, v in settings.items() if v is not None}
        obs.save(path)
        evaluator._obs = None
        with pytest.raises(ConfigError, match=f"{KL_OBSERVATIONS}.*{said}"):
            evaluator.kl_observations()
    obs.settings = wanted
    obs.save(path)
    evaluator._obs = None
    assert evaluator.kl_observations().settings == wanted
    evaluator.close()


def test_evaluation_keeps_each_episode_in_a_fixed_order(tiny_base, tmp_path):
    """The simulator and the tiny base, sampled at temperature 1: an evaluation keeps each task's per-episode
    successes, whose means are the rates; evaluating again gives the same lists, episode for episode (what pairing
    relies on); the summary carries them in the LLM side's names with their intervals; a base_eval.json made before
    they were kept is redone with them."""
    import json

    from vla_razor.analysis.intervals import wilson
    from vla_razor.robot.evaluate import BASE_EVAL, Evaluator
    from vla_razor.robot.stages import load_base, load_robot_config

    from tests.robot.conftest import QUICK

    overrides = {k: v for k, v in QUICK.items() if not k.startswith("pretrain.")}
    overrides.update(
        {
            "runs_dir": tmp_path,
            "experiment": "e",
            "base": tiny_base,
            "eval.pick_can_episodes": 3,
            "eval.probe_episodes": 2,
            "eval.temperature": 1.0,
        }
    )
    cfg = load_robot_config(None, overrides)
    cfg.experiment_dir.mkdir(parents=True)
    base = load_base(cfg)
    evaluator = Evaluator(cfg, base)
    try:
        first = evaluator.evaluate(base, "first")
        again = evaluator.evaluate(base, "again")
        assert len(first["new_task_examples"]) == 3
        assert {p: len(v) for p, v in first["probe_examples"].items()} == {"open_drawer": 2, "close_drawer": 2}
        assert first["pick_can"] == np.mean(first["new_task_examples"])
        for probe, values in first["probe_examples"].items():
            assert set(values) <= {0.0, 1.0} and first[probe] == np.mean(values)
        assert again["new_task_examples"] == first["new_task_examples"]
        assert again["probe_examples"] == first["probe_examples"]

        summary = evaluator.summary("eval", {}, 0, 0, first)
        saved = json.loads((cfg.experiment_dir / BASE_EVAL).read_text())
        assert saved["results"]["probe_examples"] == summary["base"]["prior_examples"] == first["probe_examples"]
        assert summary["base"]["new_task_examples"] == summary["new_task_examples"] == first["new_task_examples"]
        assert summary["prior_examples"] == first["probe_examples"] and len(summary["episode_set"]) == 16
        low, high = wilson(sum(first["new_task_examples"]), 3)
        assert (summary["intervals"]["new_task"]["low"], summary["intervals"]["new_task"]["high"]) == pytest.approx(
            (low, high)
        )
        assert set(summary["intervals"]["forgetting"]) == {"open_drawer", "close_drawer", "mean"}
        assert (
            summary["intervals"]["forgetting"]["mean"]["value"] == 0.0
        )  # the base against itself, episode for episode

        # a base_eval.json from before per-episode results were kept: redone, the same rates now with their lists
        old = {k: v for k, v in saved["results"].items() if not k.endswith("_examples")}
        settings = {k: v for k, v in saved["settings"].items() if k != "episode_results"}
        (cfg.experiment_dir / BASE_EVAL).write_text(json.dumps({"settings": settings, "results": old}))
        redone = evaluator.base_results()
        assert redone["probe_examples"] == first["probe_examples"] and redone["pick_can"] == old["pick_can"]
    finally:
        evaluator.close()


def test_a_summary_without_per_episode_results_still_loads_and_reports(tmp_path):
    """A robot run folder written before per-episode results were kept loads and reports, its intervals n/a."""
    import json

    from vla_razor.analysis.report import write_report
    from vla_razor.analysis.runs import load_points

    old = {
        "domain": "robot",
        "method": "rl",
        "hparams": {"lr": 1e-4},
        "seed": 0,
        "step": 4,
        "new_task": 0.5,
        "prior": {"open_drawer": 0.5, "close_drawer": 1.0},
        "forgetting": 0.0,
        "predictors": {"forward_kl": 0.01, "reverse_kl": 0.01, "tv": 0.05},
        "base": {"new_task": 0.5, "prior": {"open_drawer": 0.5, "close_drawer": 1.0}},
    }
    (tmp_path / "runs" / "rl").mkdir(parents=True)
    (tmp_path / "runs" / "rl" / "summary.json").write_text(json.dumps(old))
    (point,), _ = load_points(tmp_path / "runs")
    assert point.new_task_examples == [] and point.prior_examples == {} and point.episode_set is None
    markdown = write_report(tmp_path / "runs", tmp_path / "report", n_boot=2).markdown_path.read_text()
    assert "| rl | rl | 0.500 | 1.000 [n/a] | 0.500 [n/a] | +0.000 [n/a] | 0.0100 |" in markdown


def _suite_spec() -> EvalSpec:
    """libero_spatial's first two tasks as the new task (2 episodes each), libero_goal's first two and
    libero_object_1 as probes (4 episodes each)."""
    return EvalSpec(
        pick_can_episodes=2,
        probe_episodes=4,
        backend="libero",
        task="libero_spatial",
        probes=("libero_goal", "libero_object_1"),
        groups={
            "libero_spatial": ("libero_spatial_0", "libero_spatial_1"),
            "libero_goal": ("libero_goal_0", "libero_goal_1"),
        },
    )


def test_a_suite_is_evaluated_task_by_task_and_reported_as_their_mean():
    spec = _suite_spec()
    episodes = evaluation_episodes(spec)
    assert list(episodes) == [
        "libero_spatial_0",
        "libero_spatial_1",
        "libero_goal_0",
        "libero_goal_1",
        "libero_object_1",
    ]
    assert [len(v) for v in episodes.values()] == [2, 2, 4, 4, 4]
    assert all(e.task == task for task, specs in episodes.items() for e in specs)
    successes = with_groups(SUITE_EPISODES, spec)
    # a suite's episodes: its tasks' one after the other, so episode i pairs across models and the rate is the mean
    assert successes["libero_spatial"] == [1.0, 0.0, 0.0, 0.0] and np.mean(successes["libero_goal"]) == 0.625
    assert "libero_object" not in successes  # libero_object_1 is a task of its own


SUITE_EPISODES = {
    "libero_spatial_0": [1.0, 0.0],
    "libero_spatial_1": [0.0, 0.0],
    "libero_goal_0": [1.0, 1.0, 1.0, 1.0],
    "libero_goal_1": [0.0, 1.0, 0.0, 0.0],
    "libero_object_1": [1.0, 1.0, 0.0, 1.0],
}


def test_the_summary_gives_each_task_its_wilson_interval_and_each_suite_its_mean():
    spec = _suite_spec()
    rates = {k: float(np.mean(v)) for k, v in with_groups(SUITE_EPISODES, spec).items()}
    out = success_intervals(rates, spec)
    tasks = out["tasks"]
    assert list(tasks) == ["libero_spatial_0", "libero_spatial_1", "libero_goal_0", "libero_goal_1", "libero_object_1"]
    # Wilson, z = 1.96, by hand: 1 of 2 -> 0.5 +- 0.4055; 0 of 2 -> [0, 2 * 0.3288]
    assert tasks["libero_spatial_0"]["n"] == 2 and tasks["libero_spatial_0"]["method"] == "wilson"
    assert tasks["libero_spatial_0"]["low"] == pytest.approx(0.0945, abs=1e-4)
    assert tasks["libero_spatial_0"]["high"] == pytest.approx(0.9055, abs=1e-4)
    assert tasks["libero_spatial_1"]["low"] == pytest.approx(0.0, abs=1e-12)
    assert tasks["libero_spatial_1"]["high"] == pytest.approx(0.6576, abs=1e-4)
    assert tasks["libero_object_1"]["n"] == 4  # probes: probe_episodes each
    # the suite's mean: 1 success in its 4 episodes, Wilson by hand: centre 0.3725, half-width 0.3269
    spatial = out["groups"]["libero_spatial"]
    assert spatial["tasks"] == ["libero_spatial_0", "libero_spatial_1"] and spatial["value"] == 0.25
    assert spatial["low"] == pytest.approx(0.0456, abs=1e-4) and spatial["high"] == pytest.approx(0.6994, abs=1e-4)
    assert spatial["n"] == 4 and out["groups"]["libero_goal"]["n"] == 8  # probes: 4 episodes a task
    assert set(out["groups"]) == {"libero_spatial", "libero_goal"}  # libero_object_1 is a task of its own
