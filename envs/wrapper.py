"""One gymnasium contract for every backend: what a VLA policy sees and sends.

Observation (dict):
    "image":       uint8 [H, W, 3], the task camera (224 x 224 by default); [0, 0, 3] when render=False;
    "proprio":     float32 [16], panda joint positions (7 arm + 2 fingers, rad / m) then the end-effector
                   pose in the robot-base frame (x, y, z in m; quaternion w, x, y, z);
    "instruction": str, e.g. "pick coke can".
Action: float32 [7] = [dx, dy, dz (m), axis-angle (rad, 3), gripper (-1 closed .. +1 open, absolute)],
    see envs/embedded/scene.py for frames and clipping.
Step returns (obs, reward, terminated, truncated, info) with plain Python scalars; info["success"] is a bool.
"""

from __future__ import annotations

from typing import Any

import string

import gymnasium as gym
import numpy as np

PROPRIO_DIM = 16


def _scalar(x: Any) -> Any:
    """A 1-env tensor / array to a Python scalar (bool, float, int)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x.reshape(-1)[0].item() if x.size == 1 else x


class ManiSkillVLAWrapper(gym.Wrapper):
    """Adapts a single-env ManiSkill3 env (obs_mode "rgb" or "state_dict") to the contract above."""

    def __init__(self, env: gym.Env, instruction: str, render: bool = True, camera: str = "base_camera"):
        super().__init__(env)
        self.instruction = instruction
        self.render_images = render
        self.camera = camera
        size = getattr(env.unwrapped, "camera_size", 224) if render else 0
        self.observation_space = gym.spaces.Dict(
            image=gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            proprio=gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
            instruction=gym.spaces.Text(max_length=256, charset=string.printable),
        )
        low = env.unwrapped.single_action_space.low
        high = env.unwrapped.single_action_space.high
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def _convert(self, obs: dict) -> dict[str, Any]:
        if self.render_images:
            image = obs["sensor_data"][self.camera]["rgb"][0].cpu().numpy().astype(np.uint8)
        else:
            image = np.zeros((0, 0, 3), np.uint8)
        base = self.env.unwrapped
        qpos = base.agent.robot.get_qpos()[0].cpu().numpy()
        tcp = (base.agent.robot.pose.inv() * base.agent.tcp.pose).raw_pose[0].cpu().numpy()
        return {
            "image": image,
            "proprio": np.concatenate([qpos, tcp]).astype(np.float32),
            "instruction": self.instruction,
        }

    def _info(self, info: dict) -> dict[str, Any]:
        out = {k: _scalar(v) for k, v in info.items() if k != "reconfigure"}
        out["success"] = bool(out.get("success", False))
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options or {})
        return self._convert(obs), self._info(info)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float32).reshape(7)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return (
            self._convert(obs),
            float(_scalar(reward)),
            bool(_scalar(terminated)),
            bool(_scalar(truncated)),
            self._info(info),
        )
