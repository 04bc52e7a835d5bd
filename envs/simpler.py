"""Adapter to the real SimplerEnv Google-robot tasks (SAPIEN 2 / ManiSkill2-real2sim), same contract as
envs/wrapper.py: uint8 image, proprio vector, instruction string, info["success"], 7-D action
[xyz delta (m), axis-angle delta (rad), gripper].

SimplerEnv is not on PyPI and pins SAPIEN 2.2.2 / numpy < 2, so it lives in its own venv:
    git clone https://github.com/simpler-env/SimplerEnv --recurse-submodules
    make setup-simpler SIMPLER_DIR=SimplerEnv        # .venv-simpler; on a CPU also a Vulkan layer for lavapipe
`simpler_env` (optional), gymnasium and PIL are imported only when a "simpler" env is made. On lavapipe the
ray-tracing shader of SimplerEnv's drawer setups crashes: pick a variant (`variants`, envs/simpler_variants.py)
with shader_dir="ibl". Plain
prepackaged_config=False is not SimplerEnv's setup (20 Hz control, default scene and robot pose):
docs/results/simpler/README.md.

Differences from the embedded backend, as SimplerEnv defines them:
- the Google robot's gripper controller is RELATIVE (RT-1's convention: +1 close, -1 open); `gripper` says what
  the acting policy emits: "relative" (RT-1) passes the 7th component through, "absolute" (OpenVLA-7B: 1 open,
  0 closed) is converted step by step as OpenVLA's SimplerEnv users do (envs/gripper.py, held 15 steps);
- proprio is the end-effector (tcp) pose in the robot-base frame (x, y, z, qw, qx, qy, qz), computed from the
  env's tcp and robot poses (the drawer tasks put nothing in obs["extra"]; the others' tcp_pose is in the world
  frame), then the robot's joint positions, so its length differs from the embedded panda's 16;
- success for pick-can comes from the current step (`success_from_episode_stats=False`), not from episode
  statistics, so that RL sees a per-step signal.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from envs.gripper import GripperConvention, StickyRelativeGripper
from envs.simpler_variants import find_variant
from envs.tasks import TASKS, SimplerTwin, get_task

SIMPLER_TASKS: dict[str, str] = {t.id: t.simpler.name for t in TASKS.values() if t.simpler is not None}
"""Our task id -> SimplerEnv prepackaged task name (the records' twins, envs/tasks.py)."""

INSTALL_HINT = (
    "the 'simpler' backend needs SimplerEnv, which is not on PyPI and pins SAPIEN 2.2.2 and numpy < 2: git clone "
    "https://github.com/simpler-env/SimplerEnv --recurse-submodules, then make setup-simpler SIMPLER_DIR=SimplerEnv "
    'and run in .venv-simpler. Use backend="embedded" to run offline.'
)


def resize_image(image: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 HxWx3 image, resized naively (no aspect-ratio crop, like OpenVLA) to size x size if given."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    image = image[..., :3]
    if size is None or image.shape[:2] == (size, size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def _quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _quat_multiply(_quat_multiply(q, np.concatenate([[0.0], v])), q * [1, -1, -1, -1])[1:]


def pose_in_frame(frame: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """[7] world pose (xyz, wxyz) expressed in the frame whose world pose is `frame` (frame^-1 * pose)."""
    frame, pose = np.asarray(frame, np.float64).reshape(7), np.asarray(pose, np.float64).reshape(7)
    inverse = frame[3:] * [1, -1, -1, -1] / np.dot(frame[3:], frame[3:])
    return np.concatenate([_rotate(inverse, pose[:3] - frame[:3]), _quat_multiply(inverse, pose[3:])])


def _pose_vector(pose: Any) -> np.ndarray:
    return np.concatenate([np.asarray(pose.p, np.float64).reshape(3), np.asarray(pose.q, np.float64).reshape(4)])


def make_proprio(tcp_pose: np.ndarray, qpos: np.ndarray) -> np.ndarray:
    """[tcp pose (7: xyz, wxyz) in the robot-base frame, joint positions] as float32."""
    return np.concatenate([np.asarray(tcp_pose, np.float32).reshape(7), np.asarray(qpos, np.float32).reshape(-1)])


def check_object_on_table(obj_z: float, table_height: float, task: str, tolerance: float = 0.05) -> None:
    """Raise if the task object fell below the table: SimplerEnv then lacks its scene asset."""
    if obj_z < table_height - tolerance:
        raise RuntimeError(
            f"SimplerEnv task {task!r}: the object is at z={obj_z:.3f} m, below the table top "
            f"({table_height:.3f} m) after reset. The scene asset is probably missing (SimplerEnv falls through "
            "silently): check ManiSkill2_real2sim/data/ holds the scene and object models."
        )


def success_from_info(info: dict) -> bool:
    return bool(np.asarray(info.get("success", False)).reshape(-1)[0])


class SimplerEnvAdapter:
    """Wraps a SimplerEnv (ManiSkill2-real2sim) env in the vla-razor contract."""

    def __init__(
        self,
        env: Any,
        task: str,
        camera_size: int | None = 224,
        gripper: GripperConvention = "relative",
        episodes: list[dict] | tuple[dict, ...] = (),
    ):
        from simpler_env.utils.env.observation_utils import get_image_from_maniskill2_obs_dict

        if gripper not in ("absolute", "relative"):
            raise ValueError(f"gripper: the acting policy's convention, 'absolute' or 'relative' (got {gripper!r})")
        self.env, self.task, self.camera_size, self.gripper = env, task, camera_size, gripper
        self.episodes = list(episodes)
        self.sticky = StickyRelativeGripper()
        self._get_image = get_image_from_maniskill2_obs_dict
        self.action_space = env.action_space
        self.instruction = ""

    @property
    def unwrapped(self) -> Any:
        return self.env.unwrapped

    def _convert(self, obs: dict) -> dict[str, Any]:
        image = self._get_image(self.env.unwrapped, obs)
        return {
            "image": resize_image(image, self.camera_size),
            "proprio": make_proprio(self.tcp_pose(), obs["agent"]["qpos"]),
            "instruction": self.instruction,
        }

    def tcp_pose(self) -> np.ndarray:
        """The end effector's pose in the robot-base frame."""
        base = self.env.unwrapped
        return pose_in_frame(_pose_vector(base.agent.robot.pose), _pose_vector(base.tcp.pose))

    def env_action(self, action: Any) -> np.ndarray:
        """The policy's 7-D action -> the Google robot's (the gripper made relative when the policy's is absolute)."""
        out = np.asarray(action, np.float64).reshape(7).copy()
        if self.gripper == "absolute":
            out[6] = self.sticky(out[6])
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """A variant's episodes take their reset options in turn by seed (episode seed % n); keys of `options` (e.g.
        the caller's can placement) replace theirs."""
        self.sticky.reset()
        if self.episodes:
            options = {**copy.deepcopy(self.episodes[(seed or 0) % len(self.episodes)]), **(options or {})}
        obs, info = self.env.reset(seed=seed, options=options or {})
        base = self.env.unwrapped
        self.instruction = base.get_language_instruction()
        obj = getattr(base, "obj", None)
        if obj is not None and hasattr(base, "scene_table_height"):
            check_object_on_table(float(obj.pose.p[2]), float(base.scene_table_height), self.task)
        info = dict(info)
        info["success"] = False
        return self._convert(obs), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(self.env_action(action))
        info = dict(info)
        info["success"] = success_from_info(info)
        return self._convert(obs), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()


def check_twin(task: str, simpler_tasks: dict[str, str] | None, variants: dict[str, str] | None) -> SimplerTwin | None:
    """The task record's SimplerEnv twin, or (None) the SimplerEnv task the config names for it; a ValueError for
    a task that has neither, said before SimplerEnv is needed."""
    twin = get_task(task).simpler
    if twin is None and task not in (simpler_tasks or {}) and task not in (variants or {}):
        raise ValueError(
            f"task {task!r} has no SimplerEnv twin (its record in envs/tasks.py names none); SimplerEnv's tasks "
            f"stand in for {', '.join(SIMPLER_TASKS)}, or name one in simpler_env_kwargs.simpler_tasks.{task}"
        )
    return twin


def resolve_env(
    task: str,
    environment_map: dict[str, tuple[str, dict[str, Any]]],
    simpler_root: Path,
    simpler_tasks: dict[str, str] | None = None,
    variants: dict[str, str] | None = None,
    task_kwargs: dict[str, dict[str, Any]] | None = None,
    **kwargs: Any,
) -> tuple[str, dict[str, Any], tuple[dict[str, Any], ...]]:
    """(env id, env options, episodes' reset options) of our `task` on SimplerEnv, given its ENVIRONMENT_MAP
    (task name -> (env id, preset options)) and its clone's root. Options, in increasing precedence: SimplerEnv's
    preset with its prepackaged (visual-matching) config on; the variant's (`variants[task]`, a name from
    envs/simpler_variants.py, which also picks the SimplerEnv task); kwargs; `task_kwargs[task]`. Without a
    variant, `simpler_tasks[task]` (default SIMPLER_TASKS) picks the SimplerEnv task. An `env_id` option replaces
    the task's env id (the coke can's distractor variants); a relative `rgb_overlay_path` is a clone path."""
    twin = check_twin(task, simpler_tasks, variants)
    variant = find_variant(task, variants[task]) if variants and task in variants else None
    name = variant.simpler_task if variant else {**SIMPLER_TASKS, **(simpler_tasks or {})}[task]
    if name not in environment_map:
        known = sorted(n for n in environment_map if n.startswith("google_robot"))
        raise ValueError(
            f"simpler_env_kwargs.simpler_tasks.{task}: {name!r} is not a SimplerEnv task; its "
            f"Google-robot tasks: {', '.join(known)}"
        )
    env_id, preset = environment_map[name]
    options = {
        **preset,
        "prepackaged_config": True,
        **(variant.env_kwargs if variant else {}),
        **kwargs,
        **(task_kwargs or {}).get(task, {}),
    }
    env_id = options.pop("env_id", env_id)
    overlay = options.get("rgb_overlay_path")
    if overlay is not None and not Path(overlay).is_absolute():
        options["rgb_overlay_path"] = str(Path(simpler_root) / overlay)
    for key, value in (twin.env_kwargs if twin else {}).items():  # the task record's defaults for its twin
        options.setdefault(key, value)
    return env_id, options, variant.episodes if variant else ()


def stage_asset(task: str, options: dict[str, Any], scene_root: Path) -> Path | None:
    """The scene (stage) file SimplerEnv's env for our `task` loads with env `options` under `scene_root`
    (ManiSkill2_real2sim's data/hab2_bench_assets), or None for the scenes it builds in code ("dummy*"). Without
    a scene_name the Google robot's default is the pick-coke-can stage; the prepackaged configs choose their own."""
    scene = options.get("scene_name")
    if options.get("prepackaged_config"):
        scene = "google_pick_coke_can_1_v4" if task == "pick_can" else "dummy_drawer"
    scene = scene or "google_pick_coke_can_1_v4"
    if "dummy" in scene:
        return None
    return Path(options.get("scene_root") or scene_root) / "stages" / f"{scene}.glb"


def check_stage_asset(task: str, path: Path | None) -> None:
    """Refuse a scene whose stage file is absent or a git-lfs pointer: SAPIEN 2 only logs an error and builds the
    scene without it (no table: the coke can falls; no walls or background: a silently different variant)."""
    if path is None or (path.is_file() and path.stat().st_size > 1024):
        return
    said = "a git-lfs pointer, not the file" if path.is_file() else "missing"
    raise FileNotFoundError(
        f"SimplerEnv task {task!r}: its scene asset {path} is {said}. Fetch ManiSkill2_real2sim's data (git lfs "
        "pull), or choose a scene that is there (simpler_env_kwargs.task_kwargs.<task>.scene_name; SimplerEnv's "
        "own dummy_tabletop builds a plain table in code)."
    )


def checked_env(task: str, **kwargs: Any) -> tuple[str, dict[str, Any], tuple[dict[str, Any], ...]]:
    """`resolve_env` against the installed SimplerEnv, its scene asset checked (a FileNotFoundError that says
    what is missing). Cheap, no simulator: commands call it up front for every task they will run."""
    check_twin(task, kwargs.get("simpler_tasks"), kwargs.get("variants"))
    try:
        import simpler_env
        from mani_skill2_real2sim import ASSET_DIR
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    root = Path(simpler_env.__file__).resolve().parents[1]
    env_id, options, episodes = resolve_env(task, simpler_env.ENVIRONMENT_MAP, root, **kwargs)
    check_stage_asset(task, stage_asset(task, options, Path(ASSET_DIR) / "hab2_bench_assets"))
    return env_id, options, episodes


def make_simpler(
    task: str, camera_size: int | None = 224, gripper: GripperConvention = "relative", **kwargs: Any
) -> SimplerEnvAdapter:
    """The SimplerEnv version of `task` behind the vla-razor contract, for a policy whose gripper output follows
    `gripper` (see the module docstring). kwargs: SimplerEnv's env options and the choice of its task or
    evaluation variant (`resolve_env`), e.g. {"variants": {"open_drawer": "open/middle/lighting_darker"},
    "shader_dir": "ibl", "task_kwargs": {"pick_can": {"scene_name": "dummy_tabletop"}}}."""
    env_id, options, episodes = checked_env(task, **kwargs)
    import gymnasium as gym

    env = gym.make(env_id, obs_mode="rgbd", **options)
    return SimplerEnvAdapter(env, task, camera_size=camera_size, gripper=gripper, episodes=episodes)
