"""The LIBERO adapter's conversions and its registry records (LIBERO itself lives in .venv-libero, not in CI; a real
run is docs/results/libero/)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

import envs
from envs.grids import grid_points, placement_options, uniform_points
from envs.libero import (
    CHEAP_RENDER_PARTS,
    LiberoAdapter,
    cheap_render_parts,
    check_suite,
    env_action,
    gripper_command,
    gripper_opening,
    init_state_index,
    make_libero,
    make_proprio,
    preprocess_image,
    quat_to_axis_angle,
    without_antialiasing,
)
from envs.libero_suites import SUITE_TASKS
from envs.rollout import EpisodeSpec, ParallelRollout
from envs.tasks import LIBERO_INIT_STATES, LIBERO_TASKS, TASKS, get_task, libero_instruction
from vla_razor.robot.stages import load_robot_config

HAS_LIBERO = importlib.util.find_spec("libero") is not None


def test_every_libero_task_is_a_record_with_its_suite_limits():
    assert {s: len(t) for s, t in SUITE_TASKS.items()} == {
        "libero_spatial": 10,
        "libero_object": 10,
        "libero_goal": 10,
        "libero_10": 10,
        "libero_90": 90,
    }
    assert len(LIBERO_TASKS) == 130 and all(t in TASKS for t in LIBERO_TASKS)
    record = get_task("libero_spatial_0")
    assert (record.libero.suite, record.libero.index) == ("libero_spatial", 0)
    assert record.instruction == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    assert (
        record.max_steps == 220
        and get_task("libero_10_9").max_steps == 520
        and get_task("libero_90_89").max_steps == 400
    )
    assert record.gripper == "inverted" and record.regions == {"libero": ((0.0, 50.0), (0.0, 0.0))}
    assert get_task("libero_10_0").libero.name.startswith("LIVING_ROOM_SCENE2_")
    assert len({t.eval_stream for t in TASKS.values()}) == len(TASKS)
    # LIBERO's tasks have no embedded env: envs.TASKS (id -> ManiSkill id) leaves them out, the instructions do not
    assert (
        "libero_goal_3" not in envs.TASKS
        and envs.INSTRUCTIONS["libero_goal_3"] == get_task("libero_goal_3").instruction
    )
    with pytest.raises(ValueError, match="unknown task 'libero_spatial_10'"):
        get_task("libero_spatial_10")


def test_instruction_drops_the_scene_prefix_as_libero_does():
    assert (
        libero_instruction("KITCHEN_SCENE10_close_the_top_drawer_of_the_cabinet")
        == "close the top drawer of the cabinet"
    )
    assert libero_instruction("LIVING_ROOM_SCENE2_put_both_x_in_the_basket") == "put both x in the basket"
    assert libero_instruction("put_the_bowl_on_the_stove") == "put the bowl on the stove"


def test_the_placement_grid_is_the_stored_init_states():
    """A grid of 50 over the region and uniform draws both reach every stored state through the floor."""
    points = grid_points("libero_object_2", "libero", (LIBERO_INIT_STATES, 1))
    indices = [init_state_index(placement_options("libero_object_2", "libero", p), seed=None) for p in points]
    assert indices == list(range(LIBERO_INIT_STATES))
    drawn = uniform_points("libero_object_2", "libero", 5000, np.random.default_rng(0))
    counts = np.bincount([init_state_index({"obj_init_options": {"init_state": p}}, None) for p in drawn])
    assert len(counts) == LIBERO_INIT_STATES and counts.min() > 50
    assert init_state_index({}, seed=123) == 123 % LIBERO_INIT_STATES  # probes: no placement, the seed picks one
    assert init_state_index({"obj_init_options": {"init_state": [99.0, 0.0]}}, None) == LIBERO_INIT_STATES - 1


def test_images_are_rotated_180_degrees_and_resized():
    image = np.zeros((256, 256, 3), np.uint8)
    image[:128, :, 0] = 255  # red top half
    image[:, :128, 1] = 255  # green left half
    out = preprocess_image(image, 112, jpeg=False)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert out[-5, 56, 0] == 255 and out[5, 56, 0] == 0  # red went to the bottom
    assert out[56, -5, 1] == 255 and out[56, 5, 1] == 0  # green to the right
    np.testing.assert_array_equal(preprocess_image(image, None, jpeg=False), image[::-1, ::-1])
    np.testing.assert_array_equal(preprocess_image(image, 256, flip=False, jpeg=False), image)
    through_jpeg = preprocess_image(image, 256, flip=False, jpeg=True)  # JPEG moves values a little, no more
    assert np.abs(through_jpeg.astype(int) - image).mean() < 3


def test_gripper_follows_openvla_normalize_binarize_invert():
    """OpenVLA's LIBERO policies emit 0 closed .. 1 open; LIBERO's panda takes +1 close, -1 open."""
    assert gripper_command(1.0) == -1.0 and gripper_command(0.9) == -1.0  # open
    assert gripper_command(0.0) == 1.0 and gripper_command(0.2) == 1.0  # close
    assert gripper_command(0.5) == 0.0  # exactly between: np.sign gives 0, as OpenVLA's does
    # the embedded world's policies: -1 closed .. +1 open
    assert gripper_command(1.0, (-1, 1)) == -1.0 and gripper_command(-0.3, (-1, 1)) == 1.0
    with pytest.raises(ValueError, match="must differ"):
        gripper_command(0.0, (1, 1))


def test_demonstrated_gripper_commands_become_the_policy_openings_they_came_from():
    """LIBERO's demos store the command (-1 open, +1 close); OpenVLA's transform clips to [0, 1] and inverts."""
    np.testing.assert_array_equal(gripper_opening([-1.0, 1.0, 0.0]), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gripper_opening([-1.0, 1.0], (-1, 1)), [1.0, -1.0])
    for closed_open in ((0.0, 1.0), (-1.0, 1.0)):
        assert [gripper_command(g, closed_open) for g in gripper_opening([-1.0, 1.0], closed_open)] == [-1.0, 1.0]


def test_action_mapping_keeps_the_arm_and_converts_the_gripper():
    action = np.array([0.1, -0.2, 0.3, 0.01, -0.02, 0.03, 0.95], np.float32)
    out = env_action(action)
    np.testing.assert_allclose(out[:6], action[:6], rtol=1e-6)
    assert out[6] == -1.0 and action[6] == np.float32(0.95)  # the policy's array is left as it was
    with pytest.raises(ValueError):
        env_action(np.zeros(6))


def test_proprio_is_position_axis_angle_fingers():
    half = np.sqrt(0.5)
    obs = {
        "robot0_eef_pos": np.array([0.1, 0.2, 0.3]),
        "robot0_eef_quat": np.array([0.0, 0.0, half, half]),  # x, y, z, w: 90 degrees about z
        "robot0_gripper_qpos": np.array([0.04, -0.04]),
    }
    proprio = make_proprio(obs)
    assert proprio.dtype == np.float32 and proprio.shape == (8,)
    np.testing.assert_allclose(proprio, [0.1, 0.2, 0.3, 0, 0, np.pi / 2, 0.04, -0.04], atol=1e-6)
    np.testing.assert_allclose(quat_to_axis_angle([0, 0, 0, 1]), np.zeros(3))


class _FakeLibero:
    """LIBERO's env surface the adapter uses, recording what it was given."""

    def __init__(self) -> None:
        self.actions: list[list[float]] = []
        self.state = None
        self.seeds: list[int] = []

    def _obs(self) -> dict:
        image = np.zeros((64, 64, 3), np.uint8)
        image[:32] = 200
        return {
            "agentview_image": image,
            "robot0_eye_in_hand_image": image,
            "robot0_eef_pos": np.zeros(3),
            "robot0_eef_quat": np.array([0.0, 0.0, 0.0, 1.0]),
            "robot0_gripper_qpos": np.zeros(2),
        }

    def seed(self, seed: int) -> None:
        self.seeds.append(seed)

    def reset(self) -> dict:
        return self._obs()

    def set_init_state(self, state: np.ndarray) -> dict:
        self.state = state
        return self._obs()

    def step(self, action: list[float]) -> tuple:
        self.actions.append(action)
        return self._obs(), 0.0, False, {}

    def check_success(self) -> bool:
        return len(self.actions) >= 12  # 10 settling steps, then the second action


def test_adapter_waits_at_reset_then_steps_converted_actions():
    fake = _FakeLibero()
    states = np.arange(50 * 3, dtype=float).reshape(50, 3)
    env = LiberoAdapter(fake, "libero_goal_1", states, "put the bowl on the stove", camera_size=32, wrist=True)
    obs, info = env.reset(seed=5, options={"obj_init_options": {"init_state": [7.9, 0.0]}})
    assert info == {"success": False, "init_state": 7} and fake.seeds == [5]
    np.testing.assert_array_equal(fake.state, states[7])
    assert fake.actions == [list(envs.libero.DUMMY_ACTION)] * 10  # settling: still, gripper open
    assert obs["image"].shape == (32, 32, 3) and obs["wrist_image"].shape == (32, 32, 3)
    assert obs["image"][-1, 0, 0] > 150 and obs["image"][0, 0, 0] < 50  # the bright top half is now at the bottom
    assert obs["instruction"] == "put the bowl on the stove" and obs["proprio"].shape == (8,)
    obs, reward, terminated, truncated, info = env.step([0.1, 0, 0, 0, 0, 0, 0.0])
    assert fake.actions[-1] == [0.1, 0, 0, 0, 0, 0, 1.0] and not terminated and not truncated
    obs, reward, terminated, truncated, info = env.step([0, 0, 0, 0, 0, 0, 1.0])
    assert fake.actions[-1][6] == -1.0 and terminated and info["success"]  # the env's check ends the episode
    env.max_steps = env.steps + 1
    assert env.step(np.zeros(7))[3]  # the record's limit truncates


def test_suite_mismatch_is_refused():
    check_suite(list(SUITE_TASKS["libero_goal"]), "libero_goal", SUITE_TASKS["libero_goal"])
    with pytest.raises(RuntimeError, match="other tasks than envs/libero_suites.py"):
        check_suite(list(SUITE_TASKS["libero_goal"])[::-1], "libero_goal", SUITE_TASKS["libero_goal"])


def test_backends_refuse_each_others_tasks():
    with pytest.raises(ValueError, match="exists only on the 'libero' backend"):
        envs.make("libero_spatial_0", "embedded")
    with pytest.raises(ValueError, match="not on 'libero'"):
        envs.make("pick_can", "libero")


@pytest.mark.skipif(HAS_LIBERO, reason="LIBERO is installed here")
def test_without_libero_the_backend_says_how_to_get_it():
    with pytest.raises(ImportError, match="make setup-libero"):
        envs.make("libero_spatial_0", "libero")


def test_cheap_render_is_off_by_default_and_names_its_parts():
    """Cheap rendering changes images, so LIBERO's own rendering (and its hard reset) stays the default."""
    params = inspect.signature(make_libero).parameters
    assert params["cheap_render"].default is False and params["hard_reset"].default is True
    assert cheap_render_parts(False) == () == cheap_render_parts(None)
    assert cheap_render_parts(True) == CHEAP_RENDER_PARTS == ("antialiasing", "reflections")
    assert cheap_render_parts("reflections") == ("reflections",)
    assert cheap_render_parts(["reflections", "antialiasing"]) == CHEAP_RENDER_PARTS
    with pytest.raises(ValueError, match="unknown part"):
        cheap_render_parts(["shadows"])  # LIBERO's lights cast none


def test_hard_resets_compile_the_model_without_multisampling():
    xml = '<mujoco model="m"><visual><map znear="0.001"/></visual><worldbody/></mujoco>'  # robosuite's base.xml
    root = ElementTree.fromstring(without_antialiasing(xml))
    assert root.find("visual/quality").get("offsamples") == "0" and root.find("visual/map").get("znear") == "0.001"
    xml = '<mujoco><visual><quality shadowsize="2048" offsamples="8"/></visual></mujoco>'
    assert ElementTree.fromstring(without_antialiasing(xml)).find("visual/quality").attrib == {
        "shadowsize": "2048",
        "offsamples": "0",
    }
    assert ElementTree.fromstring(without_antialiasing("<mujoco/>")).find("visual/quality").get("offsamples") == "0"


def test_render_options_reach_make_libero_from_a_config(monkeypatch):
    """libero_env_kwargs go unchanged to every worker's make_libero (evaluate.py hands them to ParallelRollout)."""
    config = Path(__file__).resolve().parents[2] / "configs" / "libero_cpu.yaml"
    kwargs = {"render_size": 64, "hard_reset": False, "cheap_render": True, "gripper_range": [-1, 1]}
    cfg = load_robot_config(config, {"libero_env_kwargs": kwargs})
    made: list[dict] = []

    def fake_make(task: str, **options):
        made.append(options)
        return LiberoAdapter(_FakeLibero(), task, np.zeros((50, 3)), "x", camera_size=options["camera_size"])

    monkeypatch.setattr(envs.libero, "make_libero", fake_make)
    with ParallelRollout(0, backend="libero", camera_size=32, env_kwargs=cfg.libero_env_kwargs) as rollout:
        rollout.run(lambda batch: np.zeros((len(batch), 7)), [EpisodeSpec("libero_spatial_0", seed=0, max_steps=1)])
    assert made == [{"camera_size": 32, "render": True, **kwargs}]


def test_the_wrist_camera_is_rendered_only_when_kept(monkeypatch):
    """Without wrist, LIBERO's env is asked for the agent view alone (its default renders robot0_eye_in_hand too);
    with it, LIBERO's default two cameras; a camera_names kwarg wins. tests/envs/test_libero_render.py checks on the
    real LIBERO that the agent view and the proprio do not change."""
    made: list[dict] = []

    class FakeTask:
        problem_folder, bddl_file, language = "folder", "task.bddl", "do it"

    class FakeSuite:
        tasks = [type("T", (), {"name": name}) for name in SUITE_TASKS["libero_spatial"]]

        def get_task(self, index: int) -> FakeTask:
            return FakeTask()

        def get_task_init_states(self, index: int) -> np.ndarray:
            return np.zeros((50, 3))

    class FakeEnv(_FakeLibero):
        sim = None

        def __init__(self, **kwargs) -> None:
            super().__init__()
            made.append(kwargs)

    benchmark = type("B", (), {"get_benchmark_dict": staticmethod(lambda: {"libero_spatial": FakeSuite})})
    monkeypatch.setattr(envs.libero, "_import_libero", lambda: (benchmark, lambda name: "/bddl", FakeEnv))
    make_libero("libero_spatial_0", render_size=64)
    make_libero("libero_spatial_0", render_size=64, wrist=True)
    make_libero("libero_spatial_0", render_size=64, camera_names=["frontview"])
    assert made[0]["camera_names"] == ["agentview"] == list(envs.libero.AGENTVIEW_ONLY)
    assert made[0]["camera_heights"] == made[0]["camera_widths"] == 64  # robosuite gives an int to every camera
    assert "camera_names" not in made[1]  # LIBERO's default: agentview and robot0_eye_in_hand
    assert made[2]["camera_names"] == ["frontview"]
