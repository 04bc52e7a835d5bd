"""SimplerEnv's two Google-robot evaluation protocols for our tasks, as its scripts define them
(`scripts/rt1_{pick_coke_can,drawer}_{variant_agg,visual_matching}.sh`), and its success aggregation
(`tools/calc_metrics_evaluation_videos.py`).

A *variant* is one SimplerEnv env configuration (task, scene, lighting, cabinet, robot URDF, overlay) and the
episodes SimplerEnv rolls out in it (reset options: robot and object initial poses). Each variant belongs to a
*cell*: what SimplerEnv writes to one result folder and averages over its episodes. Each cell belongs to a *group*:
the coke can's orientation (horizontal / vertical / standing), or the drawer task ("open" / "close", whose top,
middle and bottom drawers are cells of the one group).

Aggregation, as SimplerEnv computes it:
- a cell's success: the mean over its episodes (all overlays / poses pooled);
- a group's success: the unweighted mean over its cells;
- the task's success: the mean over its groups (the coke can's orientations; the drawers have one group each).

Variant aggregation (`variant_aggregation`): the base scene plus other backgrounds, lightings, table textures or
cabinets, distractors (coke can), no overlay. Coke can: robot at (0.35, 0.20), the can on a 5 x 5 grid over
x in [-0.35, -0.12], y in [-0.02, 0.42]. Drawers: the robot on a 3 x 3 grid over x in [0.65, 0.85],
y in [-0.2, 0.2], drawer closed (open task) or open (close task), shader `rt` throughout.
Visual matching (`visual_matching`): the real image overlaid on the background, the four robot URDF recolorings.
Coke can: base scene, the same 25 can placements. Drawers: `dummy_drawer` scene, nine overlays (a0..c2), each with
its own robot pose, station `mk_station_recolor`, simple lighting, shader `rt`.

Every variant controls the robot as SimplerEnv's scripts do: google_robot_static, 3 Hz control, 513 Hz simulation,
the planner-interpolated end-effector controller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

GOOGLE_ROBOT: dict[str, Any] = {
    "robot": "google_robot_static",
    "control_freq": 3,
    "sim_freq": 513,
    "control_mode": (
        "arm_pd_ee_delta_pose_align_interpolate_by_planner_gripper_pd_joint_target_delta_pos_interpolate_by_planner"
    ),
    "camera_cfgs": {"add_segmentation": True},
    "prepackaged_config": False,
}
"""The env options every SimplerEnv Google-robot evaluation passes (its scripts' --robot, --control-freq,
--sim-freq and controller; its evaluator's camera segmentation, which the overlay needs); prepackaged_config off,
since each variant states its own configuration."""

PROTOCOLS = ("variant_aggregation", "visual_matching")

COKE_CAN_ORIENTATIONS: dict[str, str] = {
    "horizontal": "lr_switch",
    "vertical": "laid_vertically",
    "standing": "upright",
}
"""Orientation -> the env flag SimplerEnv sets for it."""

DRAWERS = ("top", "middle", "bottom")

URDF_VERSIONS = ("None", "recolor_tabletop_visual_matching_1", "recolor_tabletop_visual_matching_2",
                 "recolor_cabinet_visual_matching_1")  # fmt: skip
"""The robot recolorings visual matching averages over ("None": the plain robot)."""

DRAWER_OVERLAYS: dict[str, tuple[float, float, float]] = {
    "a0": (0.644, -0.179, -0.03),
    "a1": (0.765, -0.182, -0.02),
    "a2": (0.889, -0.203, -0.06),
    "b0": (0.652, 0.009, 0.0),
    "b1": (0.752, 0.009, 0.0),
    "b2": (0.851, 0.035, 0.0),
    "c0": (0.665, 0.224, 0.0),
    "c1": (0.765, 0.222, -0.025),
    "c2": (0.865, 0.222, -0.025),
}
"""Drawer visual matching: overlay image open_drawer_<id>.png -> the robot's (x, y, yaw) in that real photo."""


def linspace(low: float, high: float, n: int) -> list[float]:
    """SimplerEnv's `--x low high n` ranges (np.linspace), rounded to 6 digits."""
    return [round(low + (high - low) * i / (n - 1), 6) if n > 1 else low for i in range(n)]


def yaw_quat(yaw: float) -> list[float]:
    """wxyz quaternion of a rotation by `yaw` about z composed with SimplerEnv's robot base quaternion [0, 0, 0, 1]
    (euler2quat(0, 0, yaw) * [0, 0, 0, 1])."""
    c, s = math.cos(yaw / 2), math.sin(yaw / 2)
    return [round(-s, 9) + 0.0, 0.0, 0.0, round(c, 9)]


def robot_init(x: float, y: float, yaw: float = 0.0) -> dict[str, Any]:
    return {"init_xy": [x, y], "init_rot_quat": yaw_quat(yaw)}


def coke_can_episodes() -> list[dict[str, Any]]:
    """The 25 reset options of a coke-can variant: robot at (0.35, 0.20), the can on the 5 x 5 grid."""
    return [
        {"robot_init_options": robot_init(0.35, 0.20), "obj_init_options": {"init_xy": [x, y]}}
        for x in linspace(-0.35, -0.12, 5)
        for y in linspace(-0.02, 0.42, 5)
    ]


def drawer_episodes() -> list[dict[str, Any]]:
    """The 9 reset options of a drawer variant: the robot on the 3 x 3 grid, the cabinet where the scene puts it."""
    return [
        {"robot_init_options": robot_init(x, y), "obj_init_options": {"init_xy": [0.0, 0.0]}}
        for x in linspace(0.65, 0.85, 3)
        for y in linspace(-0.2, 0.2, 3)
    ]


@dataclass(frozen=True)
class Variant:
    """One SimplerEnv env configuration of one of our tasks and the episodes SimplerEnv runs in it."""

    name: str
    """unique within its task and protocol, e.g. "open/top/lighting_brighter", "horizontal/base"."""
    group: str
    """the coke can's orientation, or the drawer task ("open" / "close")."""
    cell: str
    """the result folder SimplerEnv averages episodes over (visual matching pools a drawer's nine overlays)."""
    simpler_task: str
    """SimplerEnv's task name (simpler_env.ENVIRONMENT_MAP)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env options over SimplerEnv's task preset (GOOGLE_ROBOT included)."""
    episodes: tuple[dict[str, Any], ...] = ()
    """reset options, one per episode."""


def _coke_can(protocol: str) -> list[Variant]:
    if protocol == "visual_matching":
        overlay = "ManiSkill2_real2sim/data/real_inpainting/google_coke_can_real_eval_1.png"
        settings = {
            f"urdf_{u}": {"scene_name": "google_pick_coke_can_1_v4", "rgb_overlay_path": overlay,
                          "rgb_overlay_cameras": ["overhead_camera"], "urdf_version": u}
            for u in URDF_VERSIONS
        }  # fmt: skip
    else:
        base = {"scene_name": "google_pick_coke_can_1_v4"}
        settings = {
            "base": base,
            "background_alt_1": {"scene_name": "google_pick_coke_can_1_v4_alt_background"},
            "background_alt_2": {"scene_name": "google_pick_coke_can_1_v4_alt_background_2"},
            "lighting_brighter": {**base, "slightly_brighter_lighting": True},
            "lighting_darker": {**base, "slightly_darker_lighting": True},
            "distractors": {**base, "env_id": "GraspSingleOpenedCokeCanDistractorInScene-v0"},
            "distractors_more": {**base, "env_id": "GraspSingleOpenedCokeCanDistractorInScene-v0",
                                 "distractor_config": "more"},
            "table_cabinet1": {"scene_name": "Baked_sc1_staging_objaverse_cabinet1_h870"},
            "table_cabinet2": {"scene_name": "Baked_sc1_staging_objaverse_cabinet2_h870"},
        }  # fmt: skip
    episodes = tuple(coke_can_episodes())
    return [
        Variant(
            f"{orientation}/{name}",
            orientation,
            f"{orientation}/{name}",
            f"google_robot_pick_{orientation}_coke_can",
            {**GOOGLE_ROBOT, **kwargs},
            episodes,
        )
        for orientation in COKE_CAN_ORIENTATIONS
        for name, kwargs in settings.items()
    ]


def _drawer(action: str, protocol: str) -> list[Variant]:
    out = []
    for drawer in DRAWERS:
        task = f"google_robot_{action}_{drawer}_drawer"
        if protocol == "visual_matching":
            for urdf in URDF_VERSIONS:
                for overlay, (x, y, yaw) in DRAWER_OVERLAYS.items():
                    kwargs = {
                        "scene_name": "dummy_drawer",
                        "shader_dir": "rt",
                        "station_name": "mk_station_recolor",
                        "light_mode": "simple",
                        "disable_bad_material": True,
                        "urdf_version": urdf,
                        "rgb_overlay_path": f"ManiSkill2_real2sim/data/real_inpainting/open_drawer_{overlay}.png",
                        "rgb_overlay_cameras": ["overhead_camera"],
                    }
                    episode = {"robot_init_options": robot_init(x, y, yaw), "obj_init_options": {"init_xy": [0.0, 0.0]}}
                    cell = f"{action}/{drawer}/urdf_{urdf}"
                    out.append(
                        Variant(f"{cell}/overlay_{overlay}", action, cell, task, {**GOOGLE_ROBOT, **kwargs}, (episode,))
                    )
            continue
        base = {"scene_name": "frl_apartment_stage_simple", "shader_dir": "rt"}
        settings = {
            "base": base,
            "background_bedroom": {**base, "scene_name": "modern_bedroom_no_roof"},
            "background_office": {**base, "scene_name": "modern_office_no_roof"},
            "lighting_brighter": {**base, "light_mode": "brighter"},
            "lighting_darker": {**base, "light_mode": "darker"},
            "cabinet_station2": {**base, "station_name": "mk_station2"},
            "cabinet_station3": {**base, "station_name": "mk_station3"},
        }
        for name, kwargs in settings.items():
            cell = f"{action}/{drawer}/{name}"
            out.append(Variant(cell, action, cell, task, {**GOOGLE_ROBOT, **kwargs}, tuple(drawer_episodes())))
    return out


def variants(task: str, protocol: str) -> list[Variant]:
    """SimplerEnv's variants of our `task` ("pick_can", "open_drawer", "close_drawer") under `protocol`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: one of {PROTOCOLS}, got {protocol!r}")
    if task == "pick_can":
        return _coke_can(protocol)
    if task in ("open_drawer", "close_drawer"):
        return _drawer(task.split("_")[0], protocol)
    raise ValueError(f"task: pick_can, open_drawer or close_drawer, got {task!r}")


def find_variant(task: str, name: str) -> Variant:
    """The variant called `name` of `task` in either protocol (the error lists the names)."""
    found = {v.name: v for protocol in PROTOCOLS for v in variants(task, protocol)}
    if name not in found:
        raise ValueError(f"{task}: no SimplerEnv variant {name!r}; its variants: {', '.join(found)}")
    return found[name]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def aggregate(variant_list: list[Variant], successes: dict[str, list[bool]]) -> dict[str, Any]:
    """SimplerEnv's aggregation of per-episode successes ({variant name: [success, ...]}) over `variant_list`:
    cells pool their variants' episodes, groups average their cells, the task averages its groups. Variants absent
    from `successes` (not run) are left out and listed under "missing"; SimplerEnv itself would give NaN there."""
    cells: dict[str, list[bool]] = {}
    groups: dict[str, list[str]] = {}
    missing = []
    for v in variant_list:
        if v.name not in successes:
            missing.append(v.name)
            continue
        cells.setdefault(v.cell, []).extend(bool(s) for s in successes[v.name])
        if v.cell not in groups.setdefault(v.group, []):
            groups[v.group].append(v.cell)
    cell_success = {c: mean([float(s) for s in eps]) for c, eps in cells.items()}
    group_success = {g: mean([cell_success[c] for c in cs]) for g, cs in groups.items()}
    return {
        "success": mean(list(group_success.values())),
        "groups": group_success,
        "cells": cell_success,
        "episodes": {c: len(eps) for c, eps in cells.items()},
        "missing": missing,
        "complete": not missing,
    }
