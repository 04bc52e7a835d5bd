"""Placement grids: where a task's object starts, as a grid of (x, y) points, and the reset options for each.

    points = grid_points("pick_can", "embedded", (10, 10))      # [100, 2], x-major, region corners included
    env.reset(seed=s, options=placement_options("pick_can", "embedded", points[i]))

Each task's region per backend and the reset option that places its object are in its record (envs/tasks.py):
pick_can and place_can place the can's world (x, y), the drawers the cabinet's (dx, dy) offset (the drawer's
initial opening stays random, from the episode seed); on SimplerEnv only pick_can has a grid (its visual-matching
coke-can grid).
"""

from __future__ import annotations

import numpy as np

from envs.tasks import Region, get_task

__all__ = ["Region", "checked_region", "default_region", "grid_points", "placement_options", "uniform_points"]


def default_region(task: str, backend: str) -> Region:
    """The task's placement region on `backend`, from its record."""
    record = get_task(task)
    if backend not in record.regions:
        why = record.no_region.get(backend, "its record gives none")
        raise ValueError(
            f"no placement grid for {task!r} on the {backend!r} backend ({why}); it has one on: "
            f"{', '.join(record.regions)}"
        )
    return record.regions[backend]


def checked_region(task: str, backend: str, region: object, field: str = "region") -> Region:
    """`region` ([[x_min, x_max], [y_min, y_max]], metres) as a Region, refused in one line naming `field` unless it
    is a non-empty part of the task's own region on `backend` (where its object can be placed and reached)."""
    own = default_region(task, backend)
    try:
        (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in region)  # type: ignore[union-attr,misc]
    except (TypeError, ValueError):
        raise ValueError(f"{field}: expected [[x_min, x_max], [y_min, y_max]] in metres, got {region!r}") from None
    (ox0, ox1), (oy0, oy1) = own
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"{field}: expected x_min < x_max and y_min < y_max, got {region!r}")
    eps = 1e-9
    if x0 < ox0 - eps or x1 > ox1 + eps or y0 < oy0 - eps or y1 > oy1 + eps:
        raise ValueError(
            f"{field}: {region!r} must lie inside {task}'s region on the {backend!r} backend, "
            f"[[{ox0:.3f}, {ox1:.3f}], [{oy0:.3f}, {oy1:.3f}]] (envs/tasks.py)"
        )
    return (x0, x1), (y0, y1)


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


def uniform_points(
    task: str, backend: str, n: int, rng: np.random.Generator, region: Region | None = None
) -> np.ndarray:
    """[n, 2] (x, y) points drawn uniformly over `region` (default: the task's) from `rng` (all x first, then
    all y)."""
    (x0, x1), (y0, y1) = region or default_region(task, backend)
    return np.stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)], axis=1)


def placement_options(task: str, backend: str, xy: np.ndarray | list[float]) -> dict:
    """The `env.reset(options=...)` that puts the task's object at grid point `xy`."""
    return {"obj_init_options": {get_task(task).placement_key: [float(v) for v in xy]}}
