"""ManiSkill3 tasks built only from the mani-skill wheel's assets; importing this registers them.
Each task's record (id, instruction, region, expert, ...) is in envs/tasks.py."""

from envs.embedded.drawer import CloseDrawerEnv, OpenDrawerEnv
from envs.embedded.pick_can import PickCanEnv, can_grid
from envs.embedded.place_can import PlaceCanEnv

__all__ = ["CloseDrawerEnv", "OpenDrawerEnv", "PickCanEnv", "PlaceCanEnv", "can_grid"]
