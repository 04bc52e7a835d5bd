"""Scripted experts for the embedded tasks: privileged-state controllers that emit the 7-D action.

An expert reads the simulator state (end-effector pose, can pose, drawer handle pose) from the ManiSkill
env and follows a short list of waypoints, one closed-loop move per control step:
    action = [clip(p_target - p_tcp), axis_angle(q_target * q_tcp^-1), gripper]
which is exactly what the env's controller expects (translation in metres, rotation as a base-frame
axis-angle vector, gripper absolute: -1 closed, +1 open). A waypoint is done when the end effector is
within `tol` of it, when the arm stopped moving towards it (blocked: a move that cannot go on), or after its
step budget; gripper waypoints just hold for a few steps. A demonstration is behaviour-cloned from single frames,
so it must never repeat the same action on an unchanging image and then switch on a step count the image does
not show: a blocked move waiting out its budget did exactly that (the angled expert pushed against the can for
10 steps before closing, and SFT on it learned to push and never close).

Pick-can has two styles that look different in the images, so that a policy trained on one and fine-tuned
on the other has something to forget:
    "top_down": over the can at 0.25 m, straight down, grasp high on the can (0.095 m), lift straight up;
    "angled":   gripper pitched 25 degrees back towards the robot, approaches diagonally from beyond the
                can, grasps lower (0.075 m), lifts up and back towards the robot.
An expert can be made noisy (`noise` > 0): each step it adds Gaussian noise of that standard deviation (metres)
to its translation, from an rng seeded by the episode, and the noisy action is what it executes and what a
recording keeps. Behaviour-cloned on such episodes, a policy learns a spread of actions around the expert's,
so sampling from it succeeds only part of the time, the way a generalist policy is imprecise.
Usage:
    expert = make_expert("pick_can", style="angled"); expert.reset()   # task ids and styles: envs/tasks.py
    action = expert.act(env)   # env: the gymnasium env from envs.make (or its .unwrapped ManiSkill env)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.spatial.transform import Rotation

OPEN, CLOSED = 1.0, -1.0
DOWN = Rotation.from_quat([1.0, 0.0, 0.0, 0.0])  # scipy xyzw: 180 deg about x, tcp z-axis points down


def _unwrap(env: Any) -> Any:
    """The ManiSkill BaseEnv under any gymnasium wrappers."""
    while hasattr(env, "env") and not hasattr(env, "agent"):
        env = env.env
    return getattr(env, "unwrapped", env) if not hasattr(env, "agent") else env


def _pose(entity: Any) -> tuple[np.ndarray, Rotation]:
    """(position, rotation) of a ManiSkill Actor / Link (or of a Pose), first sub-scene."""
    pose = getattr(entity, "pose", entity)
    p = pose.p[0].cpu().numpy().astype(np.float64)
    w, x, y, z = pose.q[0].cpu().numpy().astype(np.float64)
    return p, Rotation.from_quat([x, y, z, w])


@dataclass
class Waypoint:
    """Move the end effector to `pos` with orientation `rot`, gripper `gripper`; hold `hold` extra steps."""

    pos: np.ndarray
    rot: Rotation
    gripper: float
    max_step: float = 0.1
    tol: float = 0.008
    budget: int = 12
    hold: int = 0
    stall: float = 0.002
    """Metres: a move whose last step advanced the end effector less than this is done (blocked)."""


@dataclass
class WaypointExpert:
    """Follows waypoints built from the state at the first `act` call (or at each phase, via `plan`)."""

    plan: Callable[[Any], list[Waypoint]]
    noise: float = 0.0
    """Standard deviation of the Gaussian noise added to each step's translation, metres."""
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    waypoints: list[Waypoint] = field(default_factory=list)
    index: int = 0
    steps_in_waypoint: int = 0
    holding: int = 0
    last_tcp: np.ndarray | None = None

    def reset(self) -> None:
        self.waypoints, self.index, self.steps_in_waypoint, self.holding = [], 0, 0, 0
        self.last_tcp = None

    def act(self, env: Any) -> np.ndarray:
        base = _unwrap(env)
        if not self.waypoints:
            self.waypoints = self.plan(base)
        tcp_p, tcp_r = _pose(base.agent.tcp)
        wp = self.waypoints[min(self.index, len(self.waypoints) - 1)]
        moved = np.inf if self.last_tcp is None else float(np.linalg.norm(tcp_p - self.last_tcp))
        self.last_tcp = tcp_p
        if self.index < len(self.waypoints) - 1:
            arrived = np.linalg.norm(wp.pos - tcp_p) < wp.tol and (wp.rot * tcp_r.inv()).magnitude() < 0.05
            blocked = self.steps_in_waypoint > 0 and moved < wp.stall and np.linalg.norm(wp.pos - tcp_p) >= wp.tol
            if arrived or blocked or self.steps_in_waypoint >= wp.budget:
                if self.holding < wp.hold:
                    self.holding += 1
                else:
                    self.index, self.steps_in_waypoint, self.holding = self.index + 1, 0, 0
                    wp = self.waypoints[self.index]
        self.steps_in_waypoint += 1
        delta = wp.pos - tcp_p
        norm = np.linalg.norm(delta)
        if norm > wp.max_step:
            delta *= wp.max_step / norm
        rotvec = (wp.rot * tcp_r.inv()).as_rotvec()
        angle = np.linalg.norm(rotvec)
        if angle > 0.4:
            rotvec *= 0.4 / angle
        if self.noise > 0:
            delta = delta + self.rng.normal(0.0, self.noise, 3)
        return np.concatenate([delta, rotvec, [wp.gripper]]).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# Pick can
# --------------------------------------------------------------------------------------------------------
def pick_can_top_down(env: Any) -> list[Waypoint]:
    can, _ = _pose(env.can)
    x, y = can[0], can[1]
    grasp = np.array([x, y, 0.095])
    return [
        Waypoint(np.array([x, y, 0.25]), DOWN, OPEN, tol=0.015),
        Waypoint(grasp, DOWN, OPEN, max_step=0.06, tol=0.006),
        Waypoint(grasp, DOWN, CLOSED, budget=2),
        Waypoint(np.array([x, y, 0.25]), DOWN, CLOSED, max_step=0.05, budget=80),
    ]


def pick_can_angled(env: Any, pitch_deg: float = 25.0) -> list[Waypoint]:
    can, _ = _pose(env.can)
    x, y = can[0], can[1]
    # rotate about world y: the approach axis tilts from straight down towards -x (towards the robot; the
    # other way the panda's wrist hits its joint limit near the base); the fingers still close along
    # world y, so they straddle the can symmetrically.
    rot = Rotation.from_euler("y", np.deg2rad(pitch_deg)) * DOWN
    approach = rot.apply([0.0, 0.0, 1.0])
    # 0.075 m on the can's axis is where the palm would be; the fingers meet the can's rim ~1.8 cm before it along
    # the approach, so the grasp waypoint stops 2.5 cm short of it, where the arm arrives instead of being blocked
    grasp = np.array([x, y, 0.075]) - 0.025 * approach
    return [
        Waypoint(grasp - 0.10 * approach, rot, OPEN, tol=0.015, budget=15),
        Waypoint(grasp, rot, OPEN, max_step=0.05, tol=0.006),
        Waypoint(grasp, rot, CLOSED, budget=2),
        Waypoint(grasp + np.array([-0.06, 0.0, 0.08]), rot, CLOSED, max_step=0.04, budget=4),
        Waypoint(grasp + np.array([-0.1, 0.0, 0.18]), rot, CLOSED, max_step=0.04, budget=80),
    ]


# --------------------------------------------------------------------------------------------------------
# Drawers: the handle is a vertical bar. The gripper is pitched 45 degrees (pointing forward and down, a
# pose the panda reaches without hitting joint limits); its fingers close along y, so the bar, lying in the
# plane between the fingers, fits whatever the pitch.
# --------------------------------------------------------------------------------------------------------
FORWARD = Rotation.from_euler("y", -np.pi / 4) * DOWN


def open_drawer(env: Any) -> list[Waypoint]:
    handle, _ = _pose(env.handle_pose)
    travel = 0.2  # the full travel: the joint limit stops the drawer
    grasp = handle + np.array([0.0, 0.0, 0.0])
    back = np.array([-1.0, 0.0, 0.0])
    return [
        Waypoint(grasp + 0.10 * back + np.array([0, 0, 0.02]), FORWARD, OPEN, tol=0.012, budget=20),
        Waypoint(grasp, FORWARD, OPEN, max_step=0.05, tol=0.006),
        Waypoint(grasp, FORWARD, CLOSED, budget=2),
        Waypoint(grasp + travel * back, FORWARD, CLOSED, max_step=0.05, tol=0.01, budget=20),
        Waypoint(grasp + travel * back, FORWARD, OPEN, budget=2),
        Waypoint(grasp + (travel + 0.08) * back, FORWARD, OPEN, budget=80),
    ]


def close_drawer(env: Any) -> list[Waypoint]:
    handle, _ = _pose(env.handle_pose)
    q = float(env.drawer_qpos()[0])
    # gripper closed and pointing down, lowered in front of the handle bar, then pushing it home
    z = handle[2] - 0.005
    return [
        Waypoint(np.array([handle[0] - 0.06, handle[1], z + 0.10]), DOWN, CLOSED, tol=0.015, budget=15),
        Waypoint(np.array([handle[0] - 0.05, handle[1], z]), DOWN, CLOSED, max_step=0.06, tol=0.01),
        Waypoint(np.array([handle[0] + q - 0.01, handle[1], z]), DOWN, CLOSED, max_step=0.05, tol=0.01, budget=20),
        Waypoint(np.array([handle[0] + q - 0.12, handle[1], z + 0.1]), DOWN, CLOSED, budget=80),
    ]


# --------------------------------------------------------------------------------------------------------
# Place can: pick it top-down as pick-can does, carry it over the mark, set it down and let go
# --------------------------------------------------------------------------------------------------------
def place_can_top_down(env: Any) -> list[Waypoint]:
    can, _ = _pose(env.can)
    mark, _ = _pose(env.mark)
    x, y = can[0], can[1]
    grasp = np.array([x, y, 0.095])
    # the can is set down where it was grasped from: its bottom 2 mm over the table
    release = np.array([mark[0], mark[1], 0.097])
    return [
        Waypoint(np.array([x, y, 0.25]), DOWN, OPEN, tol=0.015),
        Waypoint(grasp, DOWN, OPEN, max_step=0.06, tol=0.006),
        Waypoint(grasp, DOWN, CLOSED, budget=2),
        Waypoint(np.array([x, y, 0.2]), DOWN, CLOSED, max_step=0.05, tol=0.015),
        Waypoint(np.array([mark[0], mark[1], 0.2]), DOWN, CLOSED, max_step=0.06, tol=0.01, budget=15),
        Waypoint(release, DOWN, CLOSED, max_step=0.04, tol=0.006),
        Waypoint(release, DOWN, OPEN, budget=2),
        Waypoint(np.array([mark[0], mark[1], 0.25]), DOWN, OPEN, max_step=0.05, budget=80),
    ]


def make_expert(task: str, style: str | None = None, noise: float = 0.0, seed: int = 0) -> WaypointExpert:
    """A fresh expert for `task` (an id of envs/tasks.py) with the plan of its record's `style` (None: the first;
    a task with a single plan takes any style, as the collection's pick-can style is passed to every task);
    `noise` (metres, >= 0) makes it noisy, with its noise drawn from `seed`."""
    from envs.tasks import get_task  # here, not at the top: the registry imports this module's plans

    if not noise >= 0:
        raise ValueError(f"expert noise must be >= 0 (metres), got {noise}")
    record = get_task(task)
    if style is None or len(record.experts) == 1:
        style = record.default_style
    if style not in record.experts:
        raise ValueError(f"{task} expert style {style!r} unknown; choose one of {sorted(record.experts)}")
    return WaypointExpert(record.experts[style], noise, np.random.default_rng([seed, 17]))
