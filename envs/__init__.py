"""Simulated robot tasks behind one gymnasium interface (see envs/wrapper.py for the contract).

    import envs
    env = envs.make("pick_can", backend="embedded", camera_size=224)
    obs, info = env.reset(seed=0, options={"obj_init_options": {"init_xy": [-0.1, 0.05]}})
    obs, reward, terminated, truncated, info = env.step(action)   # info["success"]

Backends:
    "embedded": ManiSkill3 tasks built from the mani-skill wheel alone (envs/embedded/), offline;
    "simpler":  the real SimplerEnv Google-robot tasks (needs `simpler_env`; not available offline);
    "libero":   LIBERO's tasks (ids "<suite>_<index>", e.g. "libero_spatial_0"; needs LIBERO: make setup-libero).
Tasks are looked up by id in the registry, envs/tasks.py (one record each). mani_skill (with gymnasium), the other
backends and torch are imported only when an env is made: heavy or optional, so `import envs` is cheap and works
without them.
"""

from __future__ import annotations

import os
from typing import Any

from envs.tasks import TASKS as _RECORDS, get_task

TASKS: dict[str, str] = {t.id: t.env_id for t in _RECORDS.values() if t.libero is None}
"""Task id -> registered ManiSkill id of the embedded backend (the records: envs/tasks.py; LIBERO's tasks have none)."""

INSTRUCTIONS: dict[str, str] = {t.id: t.instruction for t in _RECORDS.values()}
"""Task id -> its language instruction, from the task's record (the embedded tasks' classes and the datasets read
it)."""

BACKENDS = ("embedded", "simpler", "libero")


RENDER_BACKEND_ENV = "VLA_RAZOR_RENDER_BACKEND"
"""Environment variable that picks the embedded world's renderer for every process of a run (simulator workers
included): "cpu" (Mesa lavapipe, e.g. one render thread per worker on a many-core GPU machine:
scripts/device/lavapipe.sh env) or "gpu". Unset: "gpu" where CUDA is visible, else "cpu"."""


def _default_render_backend() -> str:
    """The renderer when `make` is given none: RENDER_BACKEND_ENV, else "gpu" where CUDA is visible (SAPIEN renders
    through the GPU's Vulkan), else "cpu" (Mesa lavapipe). Renderers differ in their images: one per experiment."""
    chosen = os.environ.get(RENDER_BACKEND_ENV, "").strip()
    if chosen:
        if chosen not in ("cpu", "gpu"):
            raise ValueError(f"{RENDER_BACKEND_ENV}={chosen!r}: expected 'cpu' (Mesa lavapipe) or 'gpu'")
        return chosen
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


def make(
    task: str,
    backend: str = "embedded",
    *,
    camera_size: int = 224,
    render: bool = True,
    sim_backend: str = "physx_cpu",
    render_backend: str | None = None,
    **kwargs: Any,
) -> Any:
    """A gymnasium env for `task`, an id of envs/tasks.py (e.g. "pick_can").

    camera_size: side of the square RGB image; render=False skips the camera (fast, for scripted experts);
    sim_backend: "physx_cpu" (works offline) or "physx_cuda" (ManiSkill downloads GPU PhysX at first use);
    render_backend: "cpu" or "gpu" (default: $VLA_RAZOR_RENDER_BACKEND, else "gpu" if CUDA is visible, else "cpu");
    kwargs: passed to the task (e.g. control_freq, sim_substeps, robot_init_qpos_noise).
    """
    record = get_task(task)  # an unknown id is refused here, naming the known ones
    if (backend == "libero") != (record.libero is not None):
        where = "only on the 'libero' backend" if record.libero else "on the 'embedded' and 'simpler' backends"
        raise ValueError(f"task {task!r} exists {where}, not on {backend!r} (envs/tasks.py)")
    if backend == "libero":
        from envs.libero import make_libero

        return make_libero(task, camera_size=camera_size, render=render, **kwargs)
    if backend == "simpler":
        from envs.simpler import make_simpler

        return make_simpler(task, camera_size=camera_size, **kwargs)
    if backend != "embedded":
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")

    os.environ.setdefault("MS_SKIP_ASSET_DOWNLOAD_PROMPT", "1")  # never block on an input() prompt
    import gymnasium as gym

    import envs.embedded  # noqa: F401  (registers the tasks)
    from envs.wrapper import ManiSkillVLAWrapper

    env = gym.make(
        TASKS[task],
        obs_mode="rgb" if render else "state_dict",
        sim_backend=sim_backend,
        render_backend=render_backend or _default_render_backend(),
        camera_size=camera_size,
        **kwargs,
    )
    return ManiSkillVLAWrapper(env, INSTRUCTIONS[task], render=render)
