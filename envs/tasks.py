"""The task registry: one record per robot task, looked up by id.

    from envs.tasks import get_task
    task = get_task("place_can")          # ValueError naming the known ids if there is no such task
    task.instruction, task.regions["embedded"], task.experts, task.simpler

A record says everything the rest of the stack needs to know about a task: its instruction, the ManiSkill id of
its embedded env (envs/embedded/<task>.py, which holds the scene and the success rule in `evaluate`), where its
object is placed (a region per backend, the grid's extent, and the reset option that puts it at a point), its
scripted expert's plans (envs/experts.py), its SimplerEnv twin and the gripper convention of its actions.
Adding a task: its env file in envs/embedded/ (ManiSkill's shape), its expert plan, and its record below.
LIBERO's 130 tasks (its suites libero_spatial, libero_object, libero_goal, libero_10, libero_90) are records too, made
from LIBERO's own task list (envs/libero_suites.py): id "<suite>_<index>" (e.g. "libero_spatial_3", the index in
LIBERO's task order 0), backend "libero" only, the task's 50 stored initial states as its placement grid. A suite's
id ("libero_spatial") names the group of its tasks where a config takes a task or a suite (`group_tasks`).
This module imports no simulator, so that configs can check a task id cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from envs import experts
from envs.libero_suites import SUITE_TASKS

Region = tuple[tuple[float, float], tuple[float, float]]
"""((x_min, x_max), (y_min, y_max)) in metres."""

_ROBOT_BASE_X = -0.615  # envs/embedded/scene.py's ROBOT_BASE_XY[0] (a test checks they agree)
CAN_REGION: Region = ((_ROBOT_BASE_X + 0.40, _ROBOT_BASE_X + 0.63), (-0.22, 0.22))
"""The can's (x, y) on the embedded table: a region the size of SimplerEnv's visual-matching grid (0.23 m x 0.44 m),
0.40 to 0.63 m in front of the panda's base and centred left-right, where a top-down grasp reaches everywhere."""
SIMPLER_CAN_REGION: Region = ((-0.35, -0.12), (-0.02, 0.42))
"""SimplerEnv's visual-matching coke-can grid (its `--obj-init-x/-y` ranges; the paper's "0.12" is a typo)."""
CABINET_OFFSET_RANGE: Region = ((-0.03, 0.03), (-0.08, 0.08))
"""The cabinet's random (dx, dy) offset from its nominal place on the embedded table, metres."""


@dataclass(frozen=True)
class SimplerTwin:
    """The SimplerEnv Google-robot task that an embedded task stands in for (envs/simpler.py)."""

    name: str
    """SimplerEnv's prepackaged task name (simpler_env.ENVIRONMENT_MAP)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Defaults for its env (a config's simpler_env_kwargs override them)."""


@dataclass(frozen=True)
class LiberoTask:
    """Where a task lives in LIBERO (envs/libero.py makes its env)."""

    suite: str
    """LIBERO's suite (benchmark) name, e.g. "libero_spatial"; also OpenVLA's unnorm key for its fine-tunes."""
    index: int
    """The task's index in the suite (LIBERO's task order 0)."""
    name: str
    """The task's name: its BDDL file's stem (bddl_files/<suite>/<name>.bddl, init_files/<suite>/<name>.pruned_init)."""


LIBERO_INIT_STATES = 50
"""Stored initial states per LIBERO task (every task of every suite has 50)."""
LIBERO_MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
"""Control steps of an episode per suite, as OpenVLA's LIBERO evaluation allows (a little over each suite's longest
training demonstration), not counting the steps waited at reset while objects settle."""
LIBERO_REGION: Region = ((0.0, float(LIBERO_INIT_STATES)), (0.0, 0.0))
"""A LIBERO task's "placement" is one of its stored initial states: x is the state's index (floored, so that a grid
of 50 over this range and uniform draws both hit each state equally), y is unused."""


def libero_instruction(name: str) -> str:
    """LIBERO's language for a task name: the words of the name after the scene prefix (libero_10 and libero_90
    names start with e.g. KITCHEN_SCENE10_)."""
    if "SCENE" in name:
        name = name[name.find("SCENE") :].split("_", 1)[1]
    return " ".join(name.split("_"))


@dataclass(frozen=True)
class Task:
    """One robot task."""

    id: str
    """The name configs, datasets and episode specs use (e.g. "pick_can")."""
    env_id: str
    """Registered ManiSkill id of the embedded env (envs/embedded/); "" for a LIBERO task."""
    instruction: str
    """The language instruction (the one copy: the env, the datasets and the policies' prompts read it)."""
    success: str
    """The success rule in words; the rule itself is the env's `evaluate`."""
    max_steps: int
    """Control steps an episode lasts at most (the env's registered max_episode_steps)."""
    regions: dict[str, Region]
    """Backend -> the region a placement grid spans (envs/grids.py); a backend missing here has no grid."""
    placement_key: str
    """The `obj_init_options` key whose (x, y) value puts the task's object at a grid point."""
    experts: dict[str, Callable[[Any], list[experts.Waypoint]]]
    """Scripted expert: style -> plan (envs/experts.py); the first style is the default."""
    eval_stream: int
    """Key of the task's evaluation seeds as a forgetting probe, fixed per task, so that a probe's episodes do not
    depend on which other probes are evaluated beside it."""
    simpler: SimplerTwin | None = None
    """Its SimplerEnv twin (None: the task exists only in the embedded world)."""
    gripper: str = "absolute"
    """The gripper convention of the env's 7th action component: "absolute", -1 closed .. +1 open (the embedded
    world; the twin's Google robot takes relative commands, envs/gripper.py converts); "inverted", -1 open .. +1
    closed (LIBERO's robosuite panda; envs/libero.py converts)."""
    no_region: dict[str, str] = field(default_factory=dict)
    """Backend -> why the task has no placement grid there (said when one is asked for)."""
    libero: LiberoTask | None = None
    """A LIBERO task: its suite and name (it then exists on the "libero" backend only and has no embedded env)."""

    @property
    def default_style(self) -> str:
        return next(iter(self.experts))


def _drawer_task(verb: str, success: str, expert: Callable[[Any], list[experts.Waypoint]], eval_stream: int) -> Task:
    """The cabinet's top-drawer task `verb`: "open" (open_drawer, RazorOpenDrawer-v1) or "close" (close_drawer,
    RazorCloseDrawer-v1), on envs/embedded/drawer.py's cabinet, with SimplerEnv's twin."""
    return Task(
        id=f"{verb}_drawer",
        env_id=f"Razor{verb.capitalize()}Drawer-v1",
        instruction=f"{verb} top drawer",
        success=success,
        max_steps=113,
        regions={"embedded": CABINET_OFFSET_RANGE},
        placement_key="cabinet_xy",
        experts={"default": expert},
        eval_stream=eval_stream,
        simpler=SimplerTwin(f"google_robot_{verb}_top_drawer"),
        no_region={"simpler": "SimplerEnv varies the robot pose for its drawer tasks, not the cabinet"},
    )


TASKS: dict[str, Task] = {
    t.id: t
    for t in (
        Task(
            id="pick_can",
            env_id="RazorPickCan-v1",
            instruction="pick coke can",
            success="the can's centre 2 cm or more above where it started while both fingers grasp it",
            max_steps=80,
            regions={"embedded": CAN_REGION, "simpler": SIMPLER_CAN_REGION},
            placement_key="init_xy",
            experts={"top_down": experts.pick_can_top_down, "angled": experts.pick_can_angled},
            eval_stream=2,
            simpler=SimplerTwin("google_robot_pick_coke_can", {"success_from_episode_stats": False}),
        ),
        _drawer_task(
            "open", "the top drawer open 0.15 m or more (of 0.2 m travel)", experts.open_drawer, eval_stream=0
        ),
        _drawer_task("close", "the top drawer open 0.05 m or less", experts.close_drawer, eval_stream=1),
        Task(
            id="place_can",
            env_id="RazorPlaceCan-v1",
            instruction="place coke can on green mark",
            success="the can stands upright, released, with its centre within 4 cm of the green mark's centre",
            max_steps=80,
            regions={"embedded": CAN_REGION},
            placement_key="init_xy",
            experts={"top_down": experts.place_can_top_down},
            eval_stream=3,
        ),
    )
}
"""Every task by id."""

_LIBERO_STREAM = 100  # LIBERO tasks' eval streams: 100 + the task's position in LIBERO_TASKS
LIBERO_TASKS: dict[str, Task] = {
    f"{suite}_{i}": Task(
        id=f"{suite}_{i}",
        env_id="",
        instruction=libero_instruction(name),
        success="the goal predicates of the task's BDDL file hold (LIBERO's env checks them every step)",
        max_steps=LIBERO_MAX_STEPS[suite],
        regions={"libero": LIBERO_REGION},
        placement_key="init_state",
        experts={},
        eval_stream=_LIBERO_STREAM + n,
        gripper="inverted",
        libero=LiberoTask(suite, i, name),
    )
    for n, (suite, i, name) in enumerate(
        (suite, i, name) for suite, names in SUITE_TASKS.items() for i, name in enumerate(names)
    )
}
"""LIBERO's tasks by id ("<suite>_<index>"); their env's gripper command is -1 open .. +1 closed (envs/libero.py
converts a policy's)."""
TASKS.update(LIBERO_TASKS)


DEFAULT_TASK = "pick_can"
"""The new task when a config names none (the paper's)."""
DEFAULT_PROBES = ("open_drawer", "close_drawer")
"""The forgetting probes when a config names none (the paper's)."""

TaskId = Literal[tuple(TASKS)]  # type: ignore[valid-type]
"""A config field's type for a task id: the config loader refuses other values, naming the known ids."""

TASK_GROUPS: dict[str, tuple[str, ...]] = {
    suite: tuple(f"{suite}_{i}" for i in range(len(names))) for suite, names in SUITE_TASKS.items()
}
"""LIBERO's suites as groups of task ids, in LIBERO's task order: "libero_spatial" -> libero_spatial_0 .. _9."""
TaskOrGroup = Literal[tuple(TASKS) + tuple(TASK_GROUPS)]  # type: ignore[valid-type]
"""A config field's type for a task id or a group's (a LIBERO suite's) id."""


def group_tasks(name: str, limit: int = 0) -> tuple[str, ...]:
    """The task ids `name` stands for: a group's tasks (its first `limit` when `limit` > 0), or a task id itself."""
    if name in TASK_GROUPS:
        tasks = TASK_GROUPS[name]
        return tasks[:limit] if limit > 0 else tasks
    get_task(name)  # a ValueError naming the known ids
    return (name,)


def get_task(task_id: str) -> Task:
    """The record of `task_id`; a ValueError naming the known ids if there is none."""
    try:
        return TASKS[task_id]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {task_id!r}; known tasks: {', '.join(TASKS)} (envs/tasks.py)") from None


def check_tasks(task_ids: Any, where: str) -> None:
    """Refuses unknown task ids, naming `where` they came from (a config field) and the known ones."""
    unknown = [t for t in task_ids if t not in TASKS]
    if unknown:
        raise ValueError(f"{where}: unknown task(s) {unknown}; known tasks: {', '.join(TASKS)} (envs/tasks.py)")
