"""ManiSkill3 tasks built only from the mani-skill wheel's assets; importing this registers them."""

from envs.embedded.drawer import CloseDrawerEnv, OpenDrawerEnv
from envs.embedded.pick_can import PickCanEnv, can_grid

__all__ = ["CloseDrawerEnv", "OpenDrawerEnv", "PickCanEnv", "can_grid"]
