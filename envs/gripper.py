"""Gripper conventions and the conversions between them.

- **absolute** (OpenVLA-7B, trained on RT-1 data converted by OpenVLA's RLDS transforms): the 7th action is the
  gripper's target opening, 1 = open, 0 = closed.
- **relative** (RT-1 and SimplerEnv's Google robot controller): the 7th action is a change, +1 = close,
  -1 = open, 0 = keep.
- The embedded world's panda takes an absolute target too, on its own scale (+1 open .. -1 closed); its
  demonstrations and policies use that scale throughout (envs/wrapper.py), so nothing is converted there.

Two conversions, as the RT-1 / OpenVLA / SimplerEnv tool chain does them:
- `relative_to_absolute`: a whole episode's relative commands -> absolute openings (how OpenVLA turned RT-1's
  data into its training targets): commands under 0.1 in magnitude keep the last state; the state before the first
  command is the opposite of that command (a first "close" means the gripper started open); no command at all
  means open throughout.
- `StickyRelativeGripper`: an absolute policy's outputs, step by step -> the Google robot's relative commands (how
  OpenVLA's SimplerEnv users drive it): the command is the previous opening minus the current one; once it exceeds
  0.5 in magnitude it is held for `repeat` steps (15 for the Google robot), since the relative controller needs a
  held command to complete a grasp or release.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

GripperConvention = Literal["absolute", "relative"]
RELATIVE_DEADBAND = 0.1
STICKY_THRESHOLD = 0.5
GOOGLE_ROBOT_STICKY_REPEAT = 15


def relative_to_absolute(relative: np.ndarray) -> np.ndarray:
    """[T] relative commands (+1 close, -1 open, 0 keep) -> [T] absolute openings (1 open, 0 closed)."""
    relative = np.asarray(relative, dtype=np.float64).reshape(-1)
    # +1 = open, -1 = close, 0 = keep (the sign flipped: an opening command makes the gripper open)
    commands = np.where(relative < -RELATIVE_DEADBAND, 1, np.where(relative > RELATIVE_DEADBAND, -1, 0))
    given = np.flatnonzero(commands)
    state = -commands[given[0]] if len(given) else 1
    out = np.empty(len(commands), dtype=np.float32)
    for t, command in enumerate(commands):
        if command != 0:
            state = command
        out[t] = (state + 1) / 2
    return out


class StickyRelativeGripper:
    """An absolute policy's gripper outputs (1 open, 0 closed), one step at a time -> relative commands."""

    def __init__(self, repeat: int = GOOGLE_ROBOT_STICKY_REPEAT) -> None:
        if repeat < 1:
            raise ValueError(f"repeat: the steps a gripper command is held, >= 1 (got {repeat})")
        self.repeat = repeat
        self.reset()

    def reset(self) -> None:
        """At every episode start: no previous opening, nothing held."""
        self.previous: float | None = None
        self.held: float | None = None
        self.held_for = 0

    def __call__(self, opening: float) -> float:
        opening = float(opening)
        command = 0.0 if self.previous is None else self.previous - opening
        self.previous = opening
        if self.held is None and abs(command) > STICKY_THRESHOLD:
            self.held, self.held_for = command, 0
        if self.held is not None:
            command = self.held
            self.held_for += 1
            if self.held_for == self.repeat:
                self.held, self.held_for = None, 0
        return command
