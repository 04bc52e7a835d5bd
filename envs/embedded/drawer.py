"""Open / close the top drawer of a cabinet built in code: stand-ins for SimplerEnv's drawer tasks.

The cabinet is a SAPIEN articulation: a fixed body (box panels) and three drawers (bottom, middle, top),
each on a prismatic joint with travel [0, 0.2] m (0 = closed, positive = pulled towards the robot) and a
vertical bar handle standing 4 cm off its front. Only the task drawer's state matters for success.
"""

from __future__ import annotations

from typing import Any

import sapien
import torch

from mani_skill.utils.registration import register_env
from mani_skill.utils.structs.pose import Pose

from envs.embedded.scene import ROBOT_BASE_XY, RazorTabletopEnv, fixed_xy, init_options
from envs.tasks import CABINET_OFFSET_RANGE, get_task

OPEN_TASK, CLOSE_TASK = get_task("open_drawer"), get_task("close_drawer")

DRAWER_TRAVEL = 0.2
DRAWER_NAMES = ("bottom", "middle", "top")
WALL = 0.015  # panel thickness
DRAWER_HEIGHT = 0.1
CAB_DEPTH, CAB_WIDTH = 0.3, 0.4
CAB_HEIGHT = 4 * WALL + 3 * DRAWER_HEIGHT
HANDLE_OFFSET = 0.04  # bar centre in front of the drawer face
CABINET_FRONT_X = ROBOT_BASE_XY[0] + 0.66
"""World x of the cabinet's front face (drawers closed) at zero offset."""

# RGBA colours. RenderMaterials are made inside build_cabinet: creating one at import time would open a
# render device before the env picks its own ("cpu"), and SAPIEN then refuses the second device.
_BODY = [0.85, 0.82, 0.75, 1]
_FRONT = [0.45, 0.3, 0.2, 1]
_HANDLE = [0.8, 0.8, 0.82, 1]


def _box(builder: Any, center: tuple[float, float, float], half: tuple[float, float, float], rgba: list[float]) -> None:
    pose = sapien.Pose(p=list(center))
    builder.add_box_collision(pose=pose, half_size=list(half))
    builder.add_box_visual(pose=pose, half_size=list(half), material=sapien.render.RenderMaterial(base_color=rgba))


def drawer_center_z(index: int) -> float:
    """Height of drawer `index`'s centre (0 = bottom) above the table."""
    return WALL + DRAWER_HEIGHT / 2 + index * (DRAWER_HEIGHT + WALL)


def build_cabinet(scene: Any, name: str = "cabinet") -> Any:
    """The cabinet articulation. Root frame: front face centre at table height; +x into the cabinet."""
    builder = scene.create_articulation_builder()
    body = builder.create_link_builder()
    body.set_name("body")
    d, w, h = CAB_DEPTH, CAB_WIDTH, CAB_HEIGHT
    _box(body, (d / 2, 0, WALL / 2), (d / 2, w / 2, WALL / 2), _BODY)  # bottom
    _box(body, (d / 2, 0, h - WALL / 2), (d / 2, w / 2, WALL / 2), _BODY)  # top
    for s in (-1, 1):  # sides
        _box(body, (d / 2, s * (w / 2 - WALL / 2), h / 2), (d / 2, WALL / 2, h / 2), _BODY)
    _box(body, (d - WALL / 2, 0, h / 2), (WALL / 2, w / 2, h / 2), _BODY)  # back
    for i in range(1, 3):  # shelves between drawers
        z = i * (DRAWER_HEIGHT + WALL) + WALL / 2
        _box(body, (d / 2, 0, z), (d / 2 - WALL, w / 2 - WALL, WALL / 2), _BODY)

    # joint frames turned 180 deg about z: the prismatic axis (joint x) points out of the front, towards -x
    flip = [0.0, 0.0, 0.0, 1.0]
    inner_w = w / 2 - WALL - 0.003
    for i, label in enumerate(DRAWER_NAMES):
        link = builder.create_link_builder(body)
        link.set_name(f"drawer_{label}")
        link.set_joint_name(f"drawer_{label}_joint")
        link.set_joint_properties(
            "prismatic",
            limits=[[0.0, DRAWER_TRAVEL]],
            pose_in_parent=sapien.Pose(p=[0, 0, drawer_center_z(i)], q=flip),
            pose_in_child=sapien.Pose(q=flip),
            friction=0.05,
            damping=2.0,
        )
        hz = DRAWER_HEIGHT / 2 - 0.004
        # drawer frame: origin at the closed front face centre; the box fills the cabinet's depth
        _box(link, (WALL / 2, 0, 0), (WALL / 2, inner_w, hz), _FRONT)  # face
        inner_d = d - 2 * WALL - 0.01
        _box(link, (WALL + inner_d / 2, 0, -hz + 0.004), (inner_d / 2, inner_w, 0.004), _BODY)  # floor
        for s in (-1, 1):
            _box(link, (WALL + inner_d / 2, s * (inner_w - 0.004), -0.01), (inner_d / 2, 0.004, hz - 0.01), _BODY)
        _box(link, (WALL + inner_d - 0.004, 0, -0.01), (0.004, inner_w, hz - 0.01), _BODY)  # back
        # handle: vertical bar in front of the face, held by two stand-offs
        _box(link, (-HANDLE_OFFSET, 0, 0), (0.008, 0.008, 0.04), _HANDLE)
        for s in (-1, 1):
            _box(link, (-HANDLE_OFFSET / 2, 0, s * 0.032), (HANDLE_OFFSET / 2, 0.006, 0.006), _HANDLE)
    builder.initial_pose = sapien.Pose(p=[CABINET_FRONT_X, 0, 0])
    return builder.build(name=name, fix_root_link=True)


class DrawerEnv(RazorTabletopEnv):
    """Shared cabinet scene; subclasses set `instruction`, the initial drawer opening and `evaluate`."""

    camera_eye = (-0.35, -0.6, 0.6)
    camera_target = (0.0, 0.0, 0.18)
    drawer_index = 2  # top
    open_target = 0.15
    close_target = 0.05
    init_qpos_range: tuple[float, float] = (0.0, 0.0)

    def _load_scene(self, options: dict) -> None:
        super()._load_scene(options)
        self.cabinet = build_cabinet(self.scene)
        label = DRAWER_NAMES[self.drawer_index]
        self.drawer_joint_index = [j.name for j in self.cabinet.active_joints].index(f"drawer_{label}_joint")
        self.handle_link = self.cabinet.links_map[f"drawer_{label}"]

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        super()._initialize_episode(env_idx, options)
        b = len(env_idx)
        init = init_options(options)
        offset = fixed_xy(init, "cabinet_xy", b)
        if offset is None:
            lo = torch.tensor([r[0] for r in CABINET_OFFSET_RANGE])
            hi = torch.tensor([r[1] for r in CABINET_OFFSET_RANGE])
            offset = lo + torch.rand((b, 2)) * (hi - lo)
        if "drawer_qpos" in init:
            q0 = torch.as_tensor(init["drawer_qpos"], dtype=torch.float32).reshape(-1).expand(b)
        else:
            lo_q, hi_q = self.init_qpos_range
            q0 = lo_q + torch.rand(b) * (hi_q - lo_q)
        pos = torch.zeros((b, 3))
        pos[:, 0] = CABINET_FRONT_X + offset[:, 0]
        pos[:, 1] = offset[:, 1]
        self.cabinet.set_pose(Pose.create_from_pq(pos.to(self.device)))
        qpos = torch.zeros((b, len(self.cabinet.active_joints)))
        qpos[:, self.drawer_joint_index] = q0
        self.cabinet.set_qpos(qpos.to(self.device))
        self.cabinet.set_qvel(torch.zeros_like(qpos).to(self.device))

    @property
    def handle_pose(self) -> Pose:
        """World pose of the task drawer's handle bar centre."""
        return self.handle_link.pose * Pose.create_from_pq(torch.tensor([-HANDLE_OFFSET, 0.0, 0.0]))

    def drawer_qpos(self) -> torch.Tensor:
        """How far the task drawer is open, metres, [num_envs]."""
        return self.cabinet.get_qpos()[:, self.drawer_joint_index]

    def _object_state(self) -> dict[str, torch.Tensor]:
        return {**super()._object_state(), "drawer_qpos": self.drawer_qpos(), "handle_pose": self.handle_pose.raw_pose}


@register_env(OPEN_TASK.env_id, max_episode_steps=OPEN_TASK.max_steps)
class OpenDrawerEnv(DrawerEnv):
    """**Task:** open the cabinet's top drawer ("open top drawer").

    **Randomizations:**
    - the cabinet's (x, y) offset from its nominal place (front face 0.62 m ahead of the robot base),
      uniform in `CABINET_OFFSET_RANGE` (+-3 cm, +-8 cm), or `obj_init_options={"cabinet_xy": [dx, dy]}`;
    - the top drawer starts closed up to 2 cm open, or `obj_init_options={"drawer_qpos": q}`.

    **Success:** the top drawer is open at least 0.15 m (of 0.2 m travel). 113 control steps at most.
    """

    instruction = OPEN_TASK.instruction
    init_qpos_range = (0.0, 0.02)

    def evaluate(self) -> dict[str, torch.Tensor]:
        q = self.drawer_qpos()
        return {"success": q >= self.open_target, "drawer_qpos": q}


@register_env(CLOSE_TASK.env_id, max_episode_steps=CLOSE_TASK.max_steps)
class CloseDrawerEnv(DrawerEnv):
    """**Task:** close the cabinet's top drawer ("close top drawer").

    **Randomizations:**
    - the cabinet's (x, y) offset as in `RazorOpenDrawer-v1`;
    - the top drawer starts open by 0.16 to 0.2 m, or `obj_init_options={"drawer_qpos": q}`.

    **Success:** the top drawer is open at most 0.05 m. 113 control steps at most.
    """

    instruction = CLOSE_TASK.instruction
    init_qpos_range = (0.16, DRAWER_TRAVEL)

    def evaluate(self) -> dict[str, torch.Tensor]:
        q = self.drawer_qpos()
        return {"success": q <= self.close_target, "drawer_qpos": q}
