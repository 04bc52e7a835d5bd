"""The world every embedded task shares: a panda with plain visuals on a plain table, one camera, 3 Hz control.

Built only from what the `mani-skill` 3.0.1 wheel ships (the panda URDF and its collision meshes) and
SAPIEN primitives, so nothing is downloaded at run time.

Action (7-D, the OpenVLA / RT-1 convention, unnormalized SI units):
    a[0:3]  end-effector translation delta in metres, in the robot-base frame (x forward, y left, z up),
            clipped to +-MAX_TRANSLATION per control step;
    a[3:6]  end-effector rotation delta as an axis-angle vector in radians, about the end-effector position
            with axes aligned to the robot-base frame; its norm is clipped to MAX_ROTATION;
    a[6]    gripper, ABSOLUTE: -1 closed, +1 open (values between are partial openings).
Deltas are relative to the measured end-effector pose at the start of the step (not an accumulated target).
One control step = SIM_SUBSTEPS physics steps; the default control frequency is 3 Hz as in SimplerEnv.

Rendering cost on CPU (lavapipe) is dominated by triangle count: the panda is drawn with its collision
meshes (a few hundred triangles per link) instead of its detailed visual meshes, and the table is a box.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sapien
import torch

from mani_skill import PACKAGE_ASSET_DIR
from mani_skill.agents.controllers import PDJointPosMimicControllerConfig
from mani_skill.agents.controllers.pd_ee_pose import PDEEPoseController, PDEEPoseControllerConfig
from mani_skill.agents.registration import register_agent
from mani_skill.agents.robots import Panda
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.geometry.rotation_conversions import axis_angle_to_matrix, matrix_to_euler_angles
from mani_skill.utils.structs.types import SimConfig

MAX_TRANSLATION = 0.2
"""Largest end-effector translation per control step, metres per axis (RT-1 fractal q99 is ~0.22)."""
MAX_ROTATION = 0.5
"""Largest end-effector rotation per control step, radians (norm of the axis-angle vector)."""
CONTROL_FREQ = 3
"""Control steps per simulated second (SimplerEnv's Google-robot tasks control at 3 Hz)."""
FULL_GC_EVERY = 50
"""Reconfigures (fresh scenes) between full garbage collections; see `RazorTabletopEnv._clear`."""
SIM_SUBSTEPS = 40
"""Physics steps per control step (sim at 120 Hz for 3 Hz control)."""
ROBOT_BASE_XY = (-0.615, 0.0)
"""Where the panda stands on the table (as in ManiSkill's table scene); the table top is at z = 0."""
REST_QPOS = np.array([0.0, -0.6, 0.0, -2.72, 0.0, 2.13, np.pi / 4, 0.04, 0.04])
"""Panda joint positions at reset: gripper open, pointing down, 0.35 m in front of the base and 0.3 m above
the table, so that the camera sees the whole workspace."""


# --------------------------------------------------------------------------------------------------------
# Controller: axis-angle deltas in SI units, clipped
# --------------------------------------------------------------------------------------------------------
class AxisAngleEEDeltaPoseController(PDEEPoseController):
    """ManiSkill's EE delta-pose controller fed [dx, dy, dz, axis-angle (3)] in metres / radians.

    ManiSkill 3.0.1 reads the rotation part as XYZ Euler angles; this converts the axis-angle vector to the
    Euler angles of the same rotation matrix (exact) after clipping translation per axis and rotation norm.
    """

    config: "AxisAngleEEDeltaPoseControllerConfig"

    def _preprocess_action(self, action: torch.Tensor) -> torch.Tensor:
        action = super()._preprocess_action(action)
        pos = action[:, :3].clamp(-self.config.max_translation, self.config.max_translation)
        rot = action[:, 3:6]
        norm = torch.linalg.norm(rot, dim=1, keepdim=True)
        rot = rot * torch.clamp(self.config.max_rotation / norm.clamp_min(1e-12), max=1.0)
        euler = matrix_to_euler_angles(axis_angle_to_matrix(rot), "XYZ")
        return torch.hstack([pos, euler])


@dataclass
class AxisAngleEEDeltaPoseControllerConfig(PDEEPoseControllerConfig):
    max_translation: float = MAX_TRANSLATION
    """Per-axis clip of the translation delta, metres."""
    max_rotation: float = MAX_ROTATION
    """Clip of the rotation delta's norm, radians."""
    controller_cls = AxisAngleEEDeltaPoseController


# --------------------------------------------------------------------------------------------------------
# Agent: the wheel's panda, drawn with its collision meshes
# --------------------------------------------------------------------------------------------------------
_LINK_COLORS = {"link0": "0.9 0.9 0.9 1", "hand": "0.25 0.25 0.25 1", "finger": "0.15 0.15 0.15 1"}


def simple_panda_urdf() -> str:
    """Write (once) and return a copy of the wheel's panda_v2.urdf whose visuals are its collision meshes.

    The file goes to $MS_ASSET_DIR/vla_razor/ (or a temp folder); mesh paths in it are absolute, pointing
    into the installed wheel, so nothing is copied but the URDF and SRDF text.
    """
    src = Path(PACKAGE_ASSET_DIR) / "robots" / "panda" / "panda_v2.urdf"
    mesh_dir = src.parent / "franka_description" / "meshes" / "collision"
    root = Path(os.environ.get("MS_ASSET_DIR", tempfile.gettempdir())) / "vla_razor"
    dst = root / "panda_v2_simple_visuals.urdf"
    text = src.read_text()

    def visual(match: re.Match[str]) -> str:
        name = match.group(1)
        color = _LINK_COLORS.get(name, "0.95 0.95 0.95 1")
        return (
            f'<mesh filename="{mesh_dir / (name + ".stl")}"/>\n      </geometry>\n'
            f'      <material name="razor_{name}"><color rgba="{color}"/></material>'
        )

    text = re.sub(r'<mesh filename="franka_description/meshes/visual/(\w+)\.glb"/>\s*</geometry>', visual, text)
    text = text.replace('filename="franka_description/', f'filename="{src.parent / "franka_description"}/')
    if dst.exists() and dst.read_text() == text:
        return str(dst)
    root.mkdir(parents=True, exist_ok=True)
    for path, content in ((dst, text), (dst.with_suffix(".srdf"), src.with_suffix(".srdf").read_text())):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    return str(dst)


@register_agent()
class RazorPanda(Panda):
    """Panda with plain visuals and one control mode, `pd_ee_delta_pose`, in the 7-D convention above."""

    uid = "panda_razor"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.urdf_path = simple_panda_urdf()
        super().__init__(*args, **kwargs)

    @property
    def _controller_configs(self) -> dict[str, Any]:
        arm = AxisAngleEEDeltaPoseControllerConfig(
            joint_names=self.arm_joint_names,
            pos_lower=-MAX_TRANSLATION,
            pos_upper=MAX_TRANSLATION,
            rot_lower=-MAX_ROTATION,
            rot_upper=MAX_ROTATION,
            stiffness=self.arm_stiffness,
            damping=self.arm_damping,
            force_limit=self.arm_force_limit,
            ee_link=self.ee_link_name,
            urdf_path=self.urdf_path,
            normalize_action=False,
        )
        gripper = PDJointPosMimicControllerConfig(
            self.gripper_joint_names,
            lower=-0.01,  # commanding slightly past closed keeps a grip force on thin objects
            upper=0.04,
            stiffness=self.gripper_stiffness,
            damping=self.gripper_damping,
            force_limit=self.gripper_force_limit,
            mimic={"panda_finger_joint2": {"joint": "panda_finger_joint1"}},
        )
        return dict(pd_ee_delta_pose=dict(arm=arm, gripper=gripper))


def init_options(options: dict | None) -> dict[str, Any]:
    """A reset's `obj_init_options` ({} when it gives none): what the episode's placement is fixed to."""
    return (options or {}).get("obj_init_options", {}) or {}


def fixed_xy(init: dict[str, Any], key: str, b: int) -> torch.Tensor | None:
    """`init[key]`, one (x, y) for every env or one per env, as a float32 [b, 2]; None when the reset leaves it free."""
    if key not in init:
        return None
    return torch.as_tensor(init[key], dtype=torch.float32).reshape(-1, 2).expand(b, 2)


# --------------------------------------------------------------------------------------------------------
# Base environment
# --------------------------------------------------------------------------------------------------------
class RazorTabletopEnv(BaseEnv):
    """Shared scaffolding: agent, table, lighting, camera, 3 Hz control, observation extras.

    Subclasses add their objects in `_load_scene` (after calling `super()._load_scene`), place them in
    `_initialize_episode`, define `evaluate` and say their objects' state in `_object_state`. `instruction` is the task's language instruction.
    """

    SUPPORTED_ROBOTS = ["panda_razor"]
    agent: RazorPanda
    instruction: str = ""
    camera_eye: tuple[float, float, float] = (0.3, 0.0, 0.7)
    camera_target: tuple[float, float, float] = (-0.15, 0.0, 0.0)
    camera_fov: float = 1.1

    def __init__(
        self,
        *args: Any,
        robot_uids: str = "panda_razor",
        camera_size: int = 224,
        control_freq: int = CONTROL_FREQ,
        sim_substeps: int = SIM_SUBSTEPS,
        robot_init_qpos_noise: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.camera_size = camera_size
        self.robot_init_qpos_noise = robot_init_qpos_noise
        self._control_freq = control_freq
        self._sim_substeps = sim_substeps
        kwargs.setdefault("control_mode", "pd_ee_delta_pose")
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    @property
    def _default_sim_config(self) -> SimConfig:
        return SimConfig(sim_freq=self._control_freq * self._sim_substeps, control_freq=self._control_freq)

    @property
    def _default_sensor_configs(self) -> list[CameraConfig]:
        pose = sapien_utils.look_at(eye=self.camera_eye, target=self.camera_target)
        size = self.camera_size
        return [CameraConfig("base_camera", pose, size, size, self.camera_fov, 0.01, 10)]

    @property
    def _default_human_render_camera_configs(self) -> CameraConfig:
        pose = sapien_utils.look_at(eye=self.camera_eye, target=self.camera_target)
        return CameraConfig("render_camera", pose, 512, 512, self.camera_fov, 0.01, 10)

    def _load_agent(self, options: dict) -> None:
        super()._load_agent(options, sapien.Pose(p=[ROBOT_BASE_XY[0], ROBOT_BASE_XY[1], 0.0]))

    def _clear(self) -> None:
        """Drop the old scene before a fresh one is built. ManiSkill's own `_clear` forces a full
        `gc.collect()` every time (to hand GPU memory back at once), which on a CPU worker costs most of a
        fresh-scene reset; here a full collection runs every `FULL_GC_EVERY` scenes (and on close), and
        Python's own collector handles the rest in between."""
        self._clears = getattr(self, "_clears", 0) + 1
        if self._clears % FULL_GC_EVERY == 0:
            super()._clear()
            return
        self._close_viewer()
        self.agent = None
        self._sensors = dict()
        self._human_render_cameras = dict()
        self.scene = None
        self._hidden_objects = []

    def close(self) -> None:
        super()._clear()

    def _load_lighting(self, options: dict) -> None:
        self.scene.set_ambient_light([0.35, 0.35, 0.35])
        self.scene.add_directional_light([0.5, 0.3, -1.0], [1.0, 1.0, 1.0])
        self.scene.add_directional_light([-0.5, -0.3, -1.0], [0.4, 0.4, 0.4])

    def _load_scene(self, options: dict) -> None:
        builder = self.scene.create_actor_builder()
        half = [2.5, 2.5, 0.05]
        builder.add_box_collision(half_size=half)
        builder.add_box_visual(half_size=half, material=sapien.render.RenderMaterial(base_color=[0.62, 0.5, 0.38, 1]))
        builder.initial_pose = sapien.Pose(p=[0.0, 0.0, -half[2]])
        self.table = builder.build_static(name="table")

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        b = len(env_idx)
        qpos = torch.as_tensor(np.tile(REST_QPOS, (b, 1)), dtype=torch.float32)
        if self.robot_init_qpos_noise > 0:  # torch's RNG is seeded from the episode seed by BaseEnv.reset
            qpos[:, :7] += torch.randn((b, 7)) * self.robot_init_qpos_noise
        self.agent.reset(qpos.to(self.device))
        self.agent.robot.set_pose(sapien.Pose(p=[ROBOT_BASE_XY[0], ROBOT_BASE_XY[1], 0.0]))

    def _get_obs_extra(self, info: dict) -> dict:
        obs = dict(tcp_pose=self.agent.tcp.pose.raw_pose)
        if "state" in self.obs_mode:
            obs.update(self._object_state())
        return obs

    def _object_state(self) -> dict[str, torch.Tensor]:
        """What a state observation adds about the task's objects (a subclass extends its parent's)."""
        return {}

    def compute_dense_reward(self, obs: Any, action: torch.Tensor, info: dict) -> torch.Tensor:
        return info["success"].float()

    def compute_normalized_dense_reward(self, obs: Any, action: torch.Tensor, info: dict) -> torch.Tensor:
        return self.compute_dense_reward(obs, action, info)
