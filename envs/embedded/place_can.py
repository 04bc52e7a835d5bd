"""Place the coke can on a green mark: pick-can's scene with a target on the table (no SimplerEnv twin).

Added as the example of a new task: this file, its expert plan (envs/experts.py's `place_can_top_down`) and its
record (envs/tasks.py). Its scripted expert's measured success is in docs/results/envs/place_can.json.
"""

from __future__ import annotations

import numpy as np
import sapien
import torch

from mani_skill.utils.registration import register_env
from mani_skill.utils.structs.pose import Pose

from envs.embedded.pick_can import CAN_HEIGHT, PickCanEnv
from envs.embedded.scene import fixed_xy, init_options
from envs.tasks import get_task

TASK = get_task("place_can")
MARK_RADIUS = 0.045
MIN_DISTANCE = 0.12
"""Metres between the can's start and the mark's centre at least (the can must be carried, not nudged)."""
SUCCESS_RADIUS = 0.04
"""The can's centre within this distance of the mark's centre (the can's radius is 3.3 cm)."""


@register_env(TASK.env_id, max_episode_steps=TASK.max_steps)
class PlaceCanEnv(PickCanEnv):
    """**Task:** pick up the coke can and set it down on the green mark ("place coke can on green mark").

    **Randomizations:**
    - the can's (x, y) as in `RazorPickCan-v1` (a grid point of `CAN_REGION`, or `obj_init_options` `init_xy` /
      `grid_index`), its rotation about its vertical axis random;
    - the mark's centre uniform over the same region, at least `MIN_DISTANCE` (12 cm) from the can, or
      `obj_init_options={"mark_xy": [x, y]}`.

    **Success:** the can stands upright on the table, no longer grasped, with its centre within `SUCCESS_RADIUS`
    (4 cm) of the mark's centre. The episode ends on success or after 80 control steps.
    """

    instruction = TASK.instruction

    def _load_scene(self, options: dict) -> None:
        super()._load_scene(options)
        builder = self.scene.create_actor_builder()
        builder.add_cylinder_visual(
            radius=MARK_RADIUS,
            half_length=0.001,
            material=sapien.render.RenderMaterial(base_color=[0.1, 0.7, 0.2, 1]),
        )
        builder.initial_pose = sapien.Pose(p=[0, 0, 0.001], q=self._can_quat(0.0))
        self.mark = builder.build_kinematic(name="mark")  # visual only: the can and fingers pass through it

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        super()._initialize_episode(env_idx, options)
        b = len(env_idx)
        xy = fixed_xy(init_options(options), "mark_xy", b)
        if xy is None:  # 16 draws from the episode's torch RNG; the first far enough from the can (else the farthest)
            (x0, x1), (y0, y1) = TASK.regions["embedded"]
            lo, hi = torch.tensor([x0, y0]), torch.tensor([x1, y1])
            candidates = lo + torch.rand((b, 16, 2)) * (hi - lo)
            dist = torch.linalg.norm(candidates - self.can.pose.p[:, None, :2].cpu(), dim=-1)
            far = dist >= MIN_DISTANCE
            pick = torch.where(far.any(1), far.float().argmax(1), dist.argmax(1))
            xy = candidates[torch.arange(b), pick]
        pos = torch.zeros((b, 3))
        pos[:, :2] = xy
        pos[:, 2] = 0.001
        quat = torch.as_tensor(np.array([self._can_quat(0.0)] * b), dtype=torch.float32)
        self.mark.set_pose(Pose.create_from_pq(pos.to(self.device), quat.to(self.device)))

    def evaluate(self) -> dict[str, torch.Tensor]:
        p = self.can.pose.p
        distance = torch.linalg.norm(p[:, :2] - self.mark.pose.p[:, :2], dim=1)
        upright = (p[:, 2] - CAN_HEIGHT / 2).abs() < 0.01
        is_grasped = self.agent.is_grasping(self.can)
        return {
            "success": (distance <= SUCCESS_RADIUS) & upright & ~is_grasped,
            "is_grasped": is_grasped,
            "distance": distance,
        }

    def _object_state(self) -> dict[str, torch.Tensor]:
        return {**super()._object_state(), "mark_pose": self.mark.pose.raw_pose}
