"""Placement grids: where a task's object starts, as a grid of (x, y) points, and the reset options for each.

    points = grid_points("pick_can", "embedded", (10, 10))      # [100, 2], x-major, region corners included
    env.reset(seed=s, options=placement_options("pick_can", "embedded", points[i]))

Regions (metres):
    pick_can, embedded:  the can's world (x, y) over envs/embedded/pick_can.py's GRID_X x GRID_Y (0.23 x 0.44 m);
    pick_can, simpler:   SimplerEnv's visual-matching coke-can grid, obj_init_x in [-0.35, -0.12],
                         obj_init_y in [-0.02, 0.42] (its `--obj-init-x/-y` ranges);
    open/close_drawer, embedded: the cabinet's (dx, dy) offset over CABINET_OFFSET_RANGE; the drawer's
                         initial opening stays random (from the episode seed).
"""

from __future__ import annotations

import numpy as np

Region = tuple[tuple[float, float], tuple[float, float]]

SIMPLER_PICK_CAN_REGION: Region = ((-0.35, -0.12), (-0.02, 0.42))


def default_region(task: str, backend: str) -> Region:
    if task == "pick_can":
        if backend == "simpler":
            return SIMPLER_PICK_CAN_REGION
        from envs.embedded.pick_can import GRID_X, GRID_Y

        return (tuple(GRID_X), tuple(GRID_Y))  # type: ignore[return-value]
    if task in ("open_drawer", "close_drawer"):
        if backend == "simpler":
            raise ValueError(
                f"no placement grid for {task!r} on the 'simpler' backend (SimplerEnv varies the robot "
                "pose for its drawer tasks, not the cabinet); use backend 'embedded'"
            )
        from envs.embedded.drawer import CABINET_OFFSET_RANGE

        return (tuple(CABINET_OFFSET_RANGE[0]), tuple(CABINET_OFFSET_RANGE[1]))  # type: ignore[return-value]
    raise ValueError(f"unknown task {task!r}")


def grid_points(
    task: str, backend: str, shape: tuple[int, int] | list[int], region: Region | None = None
) -> np.ndarray:
    """[nx * ny, 2] (x, y) points, x-major, over `region` (default: the task's) with its corners included."""
    nx, ny = (int(s) for s in shape)
    if nx < 1 or ny < 1:
        raise ValueError(f"grid shape must be positive, got {list(shape)}")
    (x0, x1), (y0, y1) = region or default_region(task, backend)
    xs = np.linspace(x0, x1, nx) if nx > 1 else np.array([(x0 + x1) / 2])
    ys = np.linspace(y0, y1, ny) if ny > 1 else np.array([(y0 + y1) / 2])
    return np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)


def uniform_points(task: str, backend: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 2] (x, y) points drawn uniformly over the task's region from `rng` (all x first, then all y)."""
    (x0, x1), (y0, y1) = default_region(task, backend)
    return np.stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)], axis=1)


def placement_options(task: str, backend: str, xy: np.ndarray | list[float]) -> dict:
    """The `env.reset(options=...)` that puts the task's object at grid point `xy`."""
    xy = [float(v) for v in xy]
    if task == "pick_can":
        return {"obj_init_options": {"init_xy": xy}}
    if task in ("open_drawer", "close_drawer"):
        return {"obj_init_options": {"cabinet_xy": xy}}
    raise ValueError(f"unknown task {task!r}")
