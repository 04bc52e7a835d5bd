"""Parallel rollouts: N simulator processes feeding batched observations to one policy callable.

    from envs.rollout import EpisodeSpec, ParallelRollout

    specs = [EpisodeSpec("pick_can", seed=i, options={"obj_init_options": {"grid_index": i}}) for i in range(100)]
    with ParallelRollout(num_workers=2, camera_size=224) as rollout:
        results = rollout.run(policy, specs, record=True)     # one EpisodeResult per spec, in spec order
        demos = rollout.run("expert:angled", specs, record=True)   # the scripted expert, inside the workers

A *policy* is either
  - a callable `policy(batch: ObsBatch) -> actions [B, 7]` (array-like, the 7-D action of envs/wrapper.py).
    The workers step in lockstep: every round, each worker either resets to its next episode or steps its
    current one with the action the policy gave it; the observations of all running episodes are then
    stacked into one `ObsBatch` (images [B, H, W, 3] uint8, proprio [B, 16] float32, instructions, ...)
    and the policy is called once. A worker whose episode ends takes the next spec from the queue, so
    episodes of different lengths and tasks mix freely.
    With `pipeline_groups=G` >= 2 the workers are split into G groups by slot (slot % G) and the loop is
    pipelined, so that the policy and the simulators work at the same time: group A's workers step while the
    policy computes group B's actions from B's latest observations; then A's replies are read, A's policy
    call made while B steps, and so on. Each group's rows go to the policy as one batched call per round.
    It pays most when a round's sim time and policy time are alike (a 7B policy on a GPU: at best twice the
    steps per second with G=2); on a CPU only when the policy leaves cores to the workers;
  - the string "expert" or "expert:<style>", or an `ExpertPolicy(style, noise)`: each worker runs whole
    episodes with the scripted expert of envs/experts.py (privileged simulator state; the style applies to
    pick_can; a noisy expert draws its noise from the episode's seed), no policy call in the main process.
    This is how demonstrations are collected.

Determinism: every episode starts with `env.reset(seed=spec.seed, options=spec.options)` on a freshly
rebuilt scene (`fresh_scene=True`, the default: a plain reset would keep PhysX contact caches from the
worker's previous episode), so its outcome depends only on its spec (task, seed, options, max_steps) and
on the actions it receives. So the same specs with a policy whose action for a row depends only on that row (and on `batch.steps` /
`batch.specs`) give the same results whatever `num_workers` is, including the in-process path
(`num_workers=0`), which runs the very same worker code in this process (use it for tests and debugging),
and whatever `pipeline_groups` is.

Failures: an exception in a worker (env creation, reset, step, expert) or a worker process that dies is
raised in the main process as `RolloutWorkerError`, naming the worker, the episode (index, task, seed,
options) and the worker's traceback or exit code; all workers are then shut down, and the next `run`
starts fresh ones. Nothing waits forever on a dead process.

Workers are started with "spawn": a script that makes a ParallelRollout at import time must guard it with
`if __name__ == "__main__":` (else each worker re-runs the script and exits, reported as "exited (code 1)").

Each worker makes one env per task it meets (`envs.make(task, backend, camera_size=..., render=...,
sim_backend=..., render_backend=..., **env_kwargs)`) and keeps it for later episodes. `sim_backend`
"physx_cuda" (GPU PhysX; ManiSkill downloads it at first use) passes straight through.
"""

from __future__ import annotations

import copy
import time
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import numpy as np
from tqdm import tqdm

import envs
from envs.experts import make_expert
from envs.tasks import check_tasks

PolicyFn = Callable[["ObsBatch"], Any]


@dataclass(frozen=True)
class ExpertPolicy:
    """The scripted expert of envs/experts.py, run inside the workers."""

    style: str | None = None
    """Expert style of the task's record (pick_can: "top_down", "angled"); None: the record's first. A task with
    one plan takes any style."""
    noise: float = 0.0
    """Standard deviation of the noise on each step's translation, metres (0: the clean expert)."""


Policy = Union[PolicyFn, str, ExpertPolicy]


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: which task, how it is initialized, how long it may last."""

    task: str
    """Task id of envs/tasks.py (e.g. "pick_can")."""
    seed: int
    """Seed of `env.reset(seed=...)`: fixes every randomization the options leave open."""
    options: dict = field(default_factory=dict)
    """Options of `env.reset(options=...)`, e.g. {"obj_init_options": {"init_xy": [x, y]}} (picklable)."""
    max_steps: int | None = None
    """Stop after this many control steps; None: the task's own limit (its record's max_steps), which also caps
    larger values."""


@dataclass(eq=False)
class Trajectory:
    """What an episode looked like, step by step (T = number of steps taken)."""

    images: np.ndarray
    """uint8 [T, H, W, 3]: the observation each action was taken on ([T, 0, 0, 3] without a camera)."""
    proprio: np.ndarray
    """float32 [T, 16]: proprioception at each of those observations."""
    actions: np.ndarray
    """float32 [T, 7]: the action taken."""
    rewards: np.ndarray
    """float32 [T]: the reward after each action (1.0 on success for the embedded tasks)."""
    instruction: str
    """The env's language instruction."""


@dataclass
class EpisodeResult:
    """The outcome of one EpisodeSpec."""

    spec: EpisodeSpec
    success: bool
    """info["success"] after the last step (the embedded tasks end on success)."""
    steps: int
    """Control steps taken."""
    trajectory: Trajectory | None = None
    """Filled when `run(..., record=True)`."""


@dataclass
class ObsBatch:
    """The observations of the running episodes, one row each, handed to the policy in one call."""

    images: np.ndarray
    """uint8 [B, H, W, 3]."""
    proprio: np.ndarray
    """float32 [B, 16]."""
    instructions: list[str]
    steps: np.ndarray
    """int64 [B]: steps already taken in each row's episode (0 right after reset)."""
    episodes: np.ndarray
    """int64 [B]: each row's index into the `episodes` list given to `run`."""
    specs: list[EpisodeSpec]
    """Each row's EpisodeSpec."""

    def __len__(self) -> int:
        return len(self.instructions)

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as observation dicts of the envs/wrapper.py contract."""
        return [
            {"image": self.images[i], "proprio": self.proprio[i], "instruction": self.instructions[i]}
            for i in range(len(self))
        ]


class RolloutWorkerError(RuntimeError):
    """A simulator worker failed; the message says which worker, which episode, and why."""


def parse_expert_policy(policy: str | ExpertPolicy) -> ExpertPolicy:
    """ "expert" -> the default style, "expert:<style>" -> that style (an ExpertPolicy passes through);
    anything else is an error."""
    if isinstance(policy, ExpertPolicy):
        return policy
    name, _, style = policy.partition(":")
    if name != "expert":
        raise ValueError(
            f'policy string {policy!r} not understood; use "expert" or "expert:<style>", or pass a callable'
        )
    return ExpertPolicy(style or None)


# --------------------------------------------------------------------------------------------------------
# Worker side: one env per task, three commands (reset, step, whole expert episode)
# --------------------------------------------------------------------------------------------------------
class _EpisodeRunner:
    """Executes commands against this process's envs. Used in worker processes and in-process alike."""

    def __init__(self, env_config: dict[str, Any]):
        self.env_config = env_config
        self.envs: dict[str, Any] = {}
        self.env: Any = None

    def _reset_options(self, spec: EpisodeSpec, fresh_scene: bool) -> dict:
        options = copy.deepcopy(spec.options)
        if fresh_scene and self.env_config.get("backend", "embedded") == "embedded":
            options["reconfigure"] = True  # rebuild the physics scene: no contact caches from earlier episodes
        return options

    def _env(self, task: str) -> Any:
        if task not in self.envs:
            cfg = dict(self.env_config)
            backend = cfg.pop("backend", "embedded")
            env_kwargs = cfg.pop("env_kwargs", {}) or {}
            self.envs[task] = envs.make(task, backend, **cfg, **env_kwargs)
        return self.envs[task]

    def handle(self, command: tuple) -> tuple:
        op = command[0]
        if op == "reset":
            _, spec, fresh_scene = command
            self.env = self._env(spec.task)
            obs, _ = self.env.reset(seed=spec.seed, options=self._reset_options(spec, fresh_scene))
            return ("obs", obs)
        if op == "step":
            obs, reward, terminated, truncated, info = self.env.step(command[1])
            return ("step", obs, reward, terminated or truncated, info["success"])
        if op == "episode":
            _, spec, expert, record, fresh_scene = command
            return ("result", self.expert_episode(spec, expert, record, fresh_scene))
        if op == "warmup":
            for task in command[1]:
                self._env(task)
            return ("ok",)
        raise ValueError(f"unknown worker command {op!r}")

    def expert_episode(self, spec: EpisodeSpec, policy: ExpertPolicy, record: bool, fresh_scene: bool) -> EpisodeResult:
        env = self._env(spec.task)
        style = {"style": policy.style} if policy.style else {}
        expert = make_expert(spec.task, **style, noise=policy.noise, seed=spec.seed)
        obs, _ = env.reset(seed=spec.seed, options=self._reset_options(spec, fresh_scene))
        expert.reset()
        recorder = _Recorder() if record else None
        steps, success = 0, False
        while True:
            action = expert.act(env)
            if recorder:
                recorder.add(obs, action)
            obs, reward, terminated, truncated, info = env.step(action)
            steps, success = steps + 1, info["success"]
            if recorder:
                recorder.rewards.append(reward)
            if terminated or truncated or (spec.max_steps is not None and steps >= spec.max_steps):
                return EpisodeResult(spec, success, steps, recorder.finish() if recorder else None)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def _worker_main(conn: mp_connection.Connection, env_config: dict[str, Any], threads: int) -> None:
    """Entry point of a worker process: answer commands until "close" (or the pipe closes)."""
    import torch  # heavy: only the worker processes need it (their thread count)

    torch.set_num_threads(threads)
    runner = _EpisodeRunner(env_config)
    try:
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            if command[0] == "close":
                return
            try:
                reply = runner.handle(command)
            except Exception:  # noqa: BLE001 - reported to the main process, which raises
                reply = ("error", traceback.format_exc())
            conn.send(reply)
    finally:
        try:
            runner.close()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass


class _Recorder:
    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.proprio: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.instruction = ""

    def add(self, obs: dict, action: np.ndarray) -> None:
        self.images.append(obs["image"])
        self.proprio.append(obs["proprio"])
        self.actions.append(np.asarray(action, np.float32).reshape(7))
        self.instruction = obs["instruction"]

    def finish(self) -> Trajectory:
        return Trajectory(
            images=np.stack(self.images).astype(np.uint8),
            proprio=np.stack(self.proprio).astype(np.float32),
            actions=np.stack(self.actions).astype(np.float32),
            rewards=np.asarray(self.rewards, np.float32),
            instruction=self.instruction,
        )


# --------------------------------------------------------------------------------------------------------
# Main side: workers behind one send / recv interface
# --------------------------------------------------------------------------------------------------------
class _LocalWorker:
    """The in-process worker: same commands, same replies, no process."""

    def __init__(self, env_config: dict[str, Any]):
        self.runner = _EpisodeRunner(env_config)
        self.reply: tuple | None = None
        self.name = "in-process worker"

    def send(self, command: tuple) -> None:
        try:
            self.reply = self.runner.handle(command)
        except Exception:  # noqa: BLE001 - same report as a worker process gives
            self.reply = ("error", traceback.format_exc())

    def recv(self, timeout: float | None) -> tuple:
        reply, self.reply = self.reply, None
        assert reply is not None, "recv without send"
        return reply

    def close(self) -> None:
        self.runner.close()


class _ProcessWorker:
    def __init__(self, ctx: Any, index: int, env_config: dict[str, Any], threads: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(child, env_config, threads), name=f"vla-razor-sim-{index}", daemon=True
        )
        self.process.start()
        child.close()
        self.name = f"worker {index} (pid {self.process.pid})"

    def send(self, command: tuple) -> None:
        try:
            self.conn.send(command)
        except (BrokenPipeError, ConnectionResetError, OSError) as err:
            raise _WorkerDied(self._death()) from err

    def recv(self, timeout: float | None) -> tuple:
        ready = mp_connection.wait([self.conn, self.process.sentinel], timeout)
        if not ready:
            raise _WorkerDied(f"no reply within {timeout} s (hung?)")
        if self.conn in ready or self.conn.poll():
            try:
                return self.conn.recv()
            except (EOFError, ConnectionResetError, OSError):
                pass
        self.process.join(1.0)
        raise _WorkerDied(self._death())

    def _death(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"the process died from signal {-code}"
        return f"the process exited (code {code})"

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(("close",))
            except OSError:
                pass
            self.process.join(5.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class _WorkerDied(Exception):
    pass


class _ProgressBar:
    """An on_result callback that advances a tqdm bar: episodes, success so far, env steps per second."""

    def __init__(self, desc: str, total: int, then: Callable[[int, EpisodeResult], None] | None):
        self.bar = tqdm(total=total, desc=desc, unit="ep", dynamic_ncols=True)
        self.then = then
        self.started = time.perf_counter()
        self.steps = self.successes = 0

    def __call__(self, index: int, result: EpisodeResult) -> None:
        self.steps += result.steps
        self.successes += bool(result.success)
        self.bar.update(1)
        rate = self.steps / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix(success=f"{self.successes / self.bar.n:.2f}", env_steps_per_s=f"{rate:.1f}")
        if self.then is not None:
            self.then(index, result)

    def close(self) -> None:
        self.bar.close()


class ParallelRollout:
    """Runs EpisodeSpecs on `num_workers` simulator processes (0: in this process) with one policy.

    num_workers:    simulator processes; 0 runs the same code in this process (tests, debugging).
    backend, camera_size, render, sim_backend, render_backend, env_kwargs: passed to `envs.make` in each
                    worker (render=False gives images of shape [0, 0, 3]; experts need no camera).
    fresh_scene:    rebuild the physics scene at every reset (ManiSkill's reconfigure, a few control steps' time),
                    so that an episode never depends on the episodes its worker ran before: results are then
                    bitwise identical for any num_workers. False is faster, but PhysX carries contact state
                    across resets (seen: ~1e-4 rad joint differences after the next grasp), so results can
                    depend on which episodes shared a worker. An attribute: may be changed between runs.
    wait_for_resets: with a policy callable, every round waits until the workers resetting to a new episode
                    have their first observation, so which episodes share a policy call follows from the specs
                    alone (not from timing): for tests, and for policies whose numerics depend on the batch (bf16
                    matmuls on a GPU). False (default): a reset does not hold the other workers up.
    start_method:   "spawn" (default) or "forkserver"; never "fork" (SAPIEN / CUDA state does not fork).
    worker_threads: torch threads per worker (1: the workers' tensors are tiny; leave the cores to them).
    timeout_s:      the longest a reply may take (env creation included) before the worker counts as hung;
                    None waits as long as the worker process lives.
    pipeline_groups: with a policy callable, split the workers into this many groups (slot % G) whose steps
                    overlap the other groups' policy calls (see the module docstring); 1: every round steps all
                    workers, then makes one policy call. At most the number of workers (num_workers=0 counts as
                    one). An attribute: may be changed between runs.
    """

    def __init__(
        self,
        num_workers: int = 2,
        *,
        backend: str = "embedded",
        camera_size: int = 224,
        render: bool = True,
        sim_backend: str = "physx_cpu",
        render_backend: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        fresh_scene: bool = True,
        wait_for_resets: bool = False,
        start_method: str = "spawn",
        worker_threads: int = 1,
        timeout_s: float | None = None,
        pipeline_groups: int = 1,
    ):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0 = in-process), got {num_workers}")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f'start_method must be "spawn" or "forkserver", got {start_method!r}')
        self.num_workers = num_workers
        self.env_config = dict(
            backend=backend,
            camera_size=camera_size,
            render=render,
            sim_backend=sim_backend,
            render_backend=render_backend,
            env_kwargs=dict(env_kwargs or {}),
        )
        self.fresh_scene = fresh_scene
        self.wait_for_resets = wait_for_resets
        self.start_method = start_method
        self.worker_threads = worker_threads
        self.timeout_s = timeout_s
        self.pipeline_groups = pipeline_groups
        self._pipeline_groups()  # refuse a bad value now, not at the first run
        self._workers: list[Any] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self, tasks: Sequence[str] = ()) -> "ParallelRollout":
        """Start the workers (if not running) and make their envs for `tasks` now rather than on first use."""
        if self._workers is None:
            if self.num_workers == 0:
                self._workers = [_LocalWorker(self.env_config)]
            else:
                ctx = mp.get_context(self.start_method)
                self._workers = [
                    _ProcessWorker(ctx, i, self.env_config, self.worker_threads) for i in range(self.num_workers)
                ]
        if tasks:
            self._check_tasks(tasks)
            workers = self._workers
            try:
                for w in workers:
                    w.send(("warmup", tuple(tasks)))
                for w in workers:
                    self._expect(w, w.recv(self.timeout_s), "ok", f"making envs for {list(tasks)}")
            except _WorkerDied as err:
                self._fail(f"{w.name} died while making envs for {list(tasks)}: {err}")
        return self

    def close(self) -> None:
        """Stop every worker (politely, then terminate / kill)."""
        workers, self._workers = self._workers, None
        for w in workers or []:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - closing the rest matters more
                pass

    def __enter__(self) -> "ParallelRollout":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ---- running --------------------------------------------------------------------------------------
    def run(
        self,
        policy: Policy,
        episodes: Sequence[EpisodeSpec],
        record: bool = False,
        on_result: Callable[[int, EpisodeResult], None] | None = None,
        progress: str | None = None,
    ) -> list[EpisodeResult]:
        """Run every spec once; results come back in the order of `episodes`.

        on_result(index, result) is called in this process as each episode ends (in completion order), so a
        caller can save it at once: an interrupted run then loses only the episodes still running.
        progress: a description to show a progress bar under (episodes done, success so far, env steps/s).
        """
        episodes = list(episodes)
        if progress is not None and episodes:
            on_result = _ProgressBar(progress, len(episodes), on_result)
            try:
                return self.run(policy, episodes, record, on_result)
            finally:
                on_result.close()
        self._check_tasks([s.task for s in episodes])
        expert = parse_expert_policy(policy) if isinstance(policy, (str, ExpertPolicy)) else None
        if expert is None and not callable(policy):
            raise TypeError(
                f"policy must be a callable taking an ObsBatch, 'expert[:style]' or an ExpertPolicy; got {type(policy)}"
            )
        if not episodes:
            return []
        self.start()
        if expert is not None:
            return self._run_expert(expert, episodes, record, on_result)
        return self._run_lockstep(policy, episodes, record, on_result)

    def _run_expert(
        self, expert: ExpertPolicy, episodes: list[EpisodeSpec], record: bool, on_result: Callable | None
    ) -> list[EpisodeResult]:
        workers = self._workers
        assert workers is not None
        results: list[EpisodeResult | None] = [None] * len(episodes)
        queue = list(range(len(episodes)))[::-1]  # pop() takes the lowest index first
        running: dict[int, int] = {}  # worker slot -> episode index
        slot = 0
        try:
            while queue or running:
                for slot, w in enumerate(workers):
                    if slot not in running and queue:
                        running[slot] = queue.pop()
                        w.send(("episode", episodes[running[slot]], expert, record, self.fresh_scene))
                slot = self._next_reply(running)
                reply = workers[slot].recv(self.timeout_s)
                index = running.pop(slot)
                self._expect(workers[slot], reply, "result", self._describe(index, episodes[index]))
                results[index] = reply[1]
                if on_result is not None:
                    on_result(index, reply[1])
        except _WorkerDied as err:
            index = running.get(slot)
            where = self._describe(index, episodes[index]) if index is not None else "between episodes"
            self._fail(f"{workers[slot].name} died while running {where}: {err}")
        except BaseException:
            self.close()  # interrupted: replies may be pending, so start afresh next time
            raise
        return results  # type: ignore[return-value]

    def _next_reply(self, running: dict[int, int]) -> int:
        """The slot of a running worker whose reply (or death) is waiting; blocks up to timeout_s."""
        workers = self._workers
        assert workers is not None
        if not isinstance(workers[0], _ProcessWorker):
            return min(running)
        handles: dict[Any, int] = {}
        for slot in running:
            handles[workers[slot].conn] = slot
            handles[workers[slot].process.sentinel] = slot
        ready = mp_connection.wait(list(handles), self.timeout_s)
        if not ready:
            where = "; ".join(f"{workers[s].name}: episode {i}" for s, i in sorted(running.items()))
            self._fail(f"no worker replied within {self.timeout_s} s (hung?) while running {where}")
        return min(handles[h] for h in ready)

    def _run_lockstep(
        self, policy: PolicyFn, episodes: list[EpisodeSpec], record: bool, on_result: Callable | None
    ) -> list[EpisodeResult]:
        """The workers in lockstep, split into `pipeline_groups` groups by slot (slot % G). Each turn: the
        current group's workers with an action step and its idle workers start a reset; then the next group's
        step replies and finished resets are read and one policy call gives that group's actions, which the
        next turn sends. With G = 1 the next group is the same one: step everything, wait, one policy call.
        With G >= 2 the policy call for one group runs while the other groups' workers step.

        A reset (a fresh scene: several steps' time, docs/PERFORMANCE.md) does not hold up the round: its episode
        joins its group's batch in the first turn after its observation arrives. So which rows share a policy call
        depends on timing; a policy whose action for a row depends only on that row (and its `steps` / `episodes`
        / `specs`) still gives the same results whatever the timing and the grouping."""
        workers = self._workers
        assert workers is not None
        groups = self._pipeline_groups()
        results: list[EpisodeResult | None] = [None] * len(episodes)
        queue = list(range(len(episodes)))[::-1]
        # per worker slot: [episode index, steps taken, last obs, recorder] while an episode runs
        running: dict[int, list] = {}
        resetting: dict[int, float] = {}  # slot -> when its reset was sent (its reply not read yet)
        stepping: list[int] = []  # slots whose step reply is not read yet, in the order they were sent
        actions: dict[int, np.ndarray] = {}
        slot = 0
        group = 0
        try:
            while queue or running:
                # 1. this group: workers with an action step; idle workers start resetting to their next episode
                for slot in groups[group]:
                    w = workers[slot]
                    if slot in actions:
                        w.send(("step", actions.pop(slot)))
                        stepping.append(slot)
                    elif slot not in running and queue:
                        index = queue.pop()
                        running[slot] = [index, 0, None, _Recorder() if record else None]
                        w.send(("reset", episodes[index], self.fresh_scene))
                        resetting[slot] = time.monotonic()
                # 2. the next group (the same one when G = 1): read its step replies
                group = (group + 1) % len(groups)
                members = set(groups[group])
                for slot in [s for s in stepping if s in members]:
                    stepping.remove(slot)
                    index, steps, obs, recorder = running[slot]
                    spec = episodes[index]
                    reply = workers[slot].recv(self.timeout_s)
                    self._expect(workers[slot], reply, "step", f"step {steps} of {self._describe(index, spec)}")
                    _, obs, reward, done, success = reply
                    steps += 1
                    if recorder:
                        recorder.rewards.append(reward)
                    if done or (spec.max_steps is not None and steps >= spec.max_steps):
                        results[index] = EpisodeResult(spec, success, steps, recorder.finish() if recorder else None)
                        del running[slot]
                        if on_result is not None:
                            on_result(index, results[index])
                    else:
                        running[slot][1:3] = [steps, obs]
                # 3. its resets that have finished (wait for one when no episode anywhere could run; for all of
                #    the group's with wait_for_resets)
                while True:
                    block = self.wait_for_resets or not any(running[s][2] is not None for s in running)
                    group_resets = {s: t for s, t in resetting.items() if s in members}
                    for slot in self._finished_resets(group_resets, block=block):
                        index = running[slot][0]
                        reply = workers[slot].recv(self.timeout_s)
                        self._expect(workers[slot], reply, "obs", f"reset of {self._describe(index, episodes[index])}")
                        running[slot][2] = reply[1]
                        del resetting[slot]
                    if not (self.wait_for_resets and members & resetting.keys()):
                        break
                # 4. one policy call for the group's episodes with an observation
                slots = sorted(s for s in members if s in running and s not in resetting)
                if not slots:
                    continue
                batch = ObsBatch(
                    images=np.stack([running[s][2]["image"] for s in slots]),
                    proprio=np.stack([running[s][2]["proprio"] for s in slots]).astype(np.float32),
                    instructions=[running[s][2]["instruction"] for s in slots],
                    steps=np.array([running[s][1] for s in slots], np.int64),
                    episodes=np.array([running[s][0] for s in slots], np.int64),
                    specs=[episodes[running[s][0]] for s in slots],
                )
                out = np.asarray(policy(batch), dtype=np.float32)
                if out.shape != (len(slots), 7):
                    raise ValueError(f"policy returned actions of shape {out.shape}; expected ({len(slots)}, 7)")
                for row, s in enumerate(slots):
                    actions[s] = out[row]
                    if running[s][3]:
                        running[s][3].add(running[s][2], out[row])
        except _WorkerDied as err:
            index = running[slot][0] if slot in running else None
            where = self._describe(index, episodes[index]) if index is not None else "between episodes"
            self._fail(f"{workers[slot].name} died while running {where}: {err}")
        except BaseException:
            # the policy (or the caller) raised: replies may be pending, so start afresh next time
            self.close()
            raise
        return results  # type: ignore[return-value]

    def _pipeline_groups(self) -> list[list[int]]:
        """The worker slots of each pipeline group (slot % G); refuses a G the workers cannot fill."""
        slots = max(1, self.num_workers)
        g = self.pipeline_groups
        if not isinstance(g, int) or not 1 <= g <= slots:
            raise ValueError(
                f"pipeline_groups must be an int from 1 to the number of workers ({slots}, "
                f"num_workers={self.num_workers}), got {g!r}: each group needs a worker"
            )
        return [list(range(i, slots, g)) for i in range(g)]

    def _finished_resets(self, resetting: dict[int, float], block: bool) -> list[int]:
        """Slots among `resetting` whose reply (or death) is waiting; with `block`, waits for at least one.
        A reset that has not answered within timeout_s is reported as hung."""
        workers = self._workers
        assert workers is not None
        if not resetting:
            return []
        if not isinstance(workers[0], _ProcessWorker):
            return sorted(resetting)  # in-process: the reply is already there
        handles: dict[Any, int] = {}
        for slot in resetting:
            handles[workers[slot].conn] = slot
            handles[workers[slot].process.sentinel] = slot
        timeout = self.timeout_s if block else 0.0
        ready = sorted({handles[h] for h in mp_connection.wait(list(handles), timeout)})
        if not ready and (
            block or any(time.monotonic() - t > (self.timeout_s or float("inf")) for t in resetting.values())
        ):
            slots = ", ".join(workers[s].name for s in sorted(resetting))
            self._fail(f"no reply to a reset within {self.timeout_s} s (hung?) from {slots}")
        return ready

    # ---- helpers --------------------------------------------------------------------------------------
    @staticmethod
    def _check_tasks(tasks: Sequence[str]) -> None:
        check_tasks(sorted(set(tasks)), "the episode specs")

    @staticmethod
    def _describe(index: int, spec: EpisodeSpec) -> str:
        return f"episode {index} (task {spec.task!r}, seed {spec.seed}, options {spec.options})"

    def _expect(self, worker: Any, reply: tuple, kind: str, what: str) -> None:
        if reply[0] == "error":
            self._fail(f"{worker.name} failed during {what}:\n{reply[1]}")
        if reply[0] != kind:
            self._fail(f"{worker.name} answered {reply[0]!r} to {what}; expected {kind!r} (protocol error)")

    def _fail(self, message: str) -> None:
        self.close()
        raise RolloutWorkerError(message + "\nAll simulator workers were stopped; the next run starts new ones.")
