"""Pick a coke can: the embedded stand-in for SimplerEnv's `GraspSingleOpenedCokeCanInScene-v0`."""

from __future__ import annotations

import numpy as np
import sapien
import torch

from mani_skill.utils.registration import register_env
from mani_skill.utils.structs.pose import Pose

from envs.grids import grid_points
from envs.embedded.scene import RazorTabletopEnv, fixed_xy, init_options
from envs.tasks import get_task

TASK = get_task("pick_can")

CAN_RADIUS = 0.033
CAN_HEIGHT = 0.12
GRID_SHAPE = (10, 10)
GRID_X, GRID_Y = TASK.regions["embedded"]  # the task record's region (envs/tasks.py's CAN_REGION)


def can_grid(shape: tuple[int, int] = GRID_SHAPE) -> np.ndarray:
    """The can placements, [nx * ny, 2] world (x, y) in metres, x-major; region corners included (envs/grids.py's
    pick-can grid on this world, the one definition)."""
    return grid_points("pick_can", "embedded", shape, (GRID_X, GRID_Y))


@register_env(TASK.env_id, max_episode_steps=TASK.max_steps)
class PickCanEnv(RazorTabletopEnv):
    """**Task:** pick up a coke can standing on the table ("pick coke can").

    **Randomizations:**
    - the can's (x, y) is one of the `GRID_SHAPE` (10 x 10) grid points over x in `GRID_X`, y in `GRID_Y`
      (0.23 m x 0.44 m), chosen uniformly at random on reset, unless given by
      `reset(options={"obj_init_options": {"init_xy": [x, y]}})` (any point, world frame, metres) or
      `{"obj_init_options": {"grid_index": i}}` (row-major index into `can_grid()`);
    - the can's rotation about its vertical axis is random (it is rotationally symmetric, so only its
      contacts change); it always stands upright;
    - optional joint noise on the panda's rest pose (`robot_init_qpos_noise`, default 0).

    **Success:** the can's centre is at least `lift_threshold` (2 cm) above where it started while both
    fingers grasp it. The episode ends on success or after 80 control steps (26.7 s at 3 Hz).
    """

    instruction = TASK.instruction
    lift_threshold = 0.02
    # Facing the robot from beyond the grid, as close as keeps the whole grid (cans included) in the frame:
    # at 224 px the grid's corners land at u in [27, 197], v in [78, 160], the can is ~21 px wide (~16 px from
    # the shared default camera), the gripper at rest is at the top edge (v ~ 16) and a can lifted 0.25 m
    # over any grid corner stays in view.
    camera_eye = (0.25, 0.0, 0.6)
    camera_target = (-0.13, 0.0, 0.05)
    camera_fov = 1.0

    def _load_scene(self, options: dict) -> None:
        super()._load_scene(options)
        builder = self.scene.create_actor_builder()
        # SAPIEN cylinders lie along their local x axis: the actor's pose stands it up (see `_can_quat`).
        half = CAN_HEIGHT / 2
        builder.add_cylinder_collision(radius=CAN_RADIUS, half_length=half, density=300)
        builder.add_cylinder_visual(
            radius=CAN_RADIUS,
            half_length=half - 0.006,
            material=sapien.render.RenderMaterial(base_color=[0.75, 0.03, 0.05, 1]),
        )
        for sign in (-1, 1):  # silver lid and bottom
            builder.add_cylinder_visual(
                pose=sapien.Pose(p=[sign * (half - 0.003), 0, 0]),
                radius=CAN_RADIUS * 0.97,
                half_length=0.003,
                material=sapien.render.RenderMaterial(base_color=[0.8, 0.8, 0.82, 1], metallic=0.6),
            )
        builder.initial_pose = sapien.Pose(p=[0, 0, half], q=self._can_quat(0.0))
        self.can = builder.build(name="coke_can")

    @staticmethod
    def _can_quat(yaw: float) -> list[float]:
        """Quaternion (wxyz) taking the cylinder's local x axis to world z, then turning it by `yaw` about z."""
        stand = np.array([np.cos(-np.pi / 4), 0.0, np.sin(-np.pi / 4), 0.0])  # -90 deg about y: x -> z
        turn = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        w1, x1, y1, z1 = turn
        w2, x2, y2, z2 = stand
        return [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        super()._initialize_episode(env_idx, options)
        b = len(env_idx)
        init = init_options(options)
        grid = torch.as_tensor(can_grid(), dtype=torch.float32)
        xy = fixed_xy(init, "init_xy", b)
        if xy is None and "grid_index" in init:
            xy = grid[torch.as_tensor(init["grid_index"]).reshape(-1)].expand(b, 2)
        elif xy is None:
            xy = grid[torch.randint(len(grid), (b,))]
        yaw = torch.rand(b) * 2 * np.pi
        quat = torch.as_tensor(np.array([self._can_quat(float(a)) for a in yaw]), dtype=torch.float32)
        pos = torch.zeros((b, 3))
        pos[:, :2] = xy
        pos[:, 2] = CAN_HEIGHT / 2 + 1e-3
        self.can.set_pose(Pose.create_from_pq(pos.to(self.device), quat.to(self.device)))
        self.can.set_linear_velocity(torch.zeros((b, 3), device=self.device))
        self.can.set_angular_velocity(torch.zeros((b, 3), device=self.device))
        self.can_init_z = torch.full((b,), CAN_HEIGHT / 2, device=self.device)

    def evaluate(self) -> dict[str, torch.Tensor]:
        lift = self.can.pose.p[:, 2] - self.can_init_z
        is_grasped = self.agent.is_grasping(self.can)
        return {
            "success": (lift >= self.lift_threshold) & is_grasped,
            "is_grasped": is_grasped,
            "lift": lift,
        }

    def _object_state(self) -> dict[str, torch.Tensor]:
        return {**super()._object_state(), "can_pose": self.can.pose.raw_pose}
