"""envs/rollout.py: lockstep batched rollouts on worker processes, worker-side experts, failure reports.

Real simulators at a small camera size. Worker pools are shared per module: each worker process pays
~10-20 s to import ManiSkill and compile shaders on 2 CPU cores.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("mani_skill")

from envs.embedded.pick_can import can_grid  # noqa: E402
from envs.embedded.scene import ROBOT_BASE_XY  # noqa: E402
from envs.rollout import EpisodeSpec, ObsBatch, ParallelRollout, RolloutWorkerError  # noqa: E402

SIZE = 48


def grasp_from_spec(batch: ObsBatch) -> np.ndarray:
    """A deterministic central policy from proprio and the spec's can placement (rows independent):
    above the can, down, close, lift. Each row's action depends only on that row."""
    actions = np.zeros((len(batch), 7), np.float32)
    for row, (spec, step) in enumerate(zip(batch.specs, batch.steps)):
        x, y = spec.options["obj_init_options"]["init_xy"]
        can = np.array([x - ROBOT_BASE_XY[0], y - ROBOT_BASE_XY[1]])  # robot-base frame
        tcp = batch.proprio[row, 9:12]
        if step < 7:
            target, gripper = [*can, 0.22], 1.0
        elif step < 13:
            target, gripper = [*can, 0.095], 1.0
        elif step < 15:
            target, gripper = [*can, 0.095], -1.0
        else:
            target, gripper = [*can, 0.25], -1.0
        actions[row, :3] = np.clip(np.asarray(target) - tcp, -0.08, 0.08)
        actions[row, 6] = gripper
    return actions


def pick_specs(indices: list[int], max_steps: list[int | None]) -> list[EpisodeSpec]:
    grid = can_grid()
    return [
        EpisodeSpec("pick_can", seed=i, options={"obj_init_options": {"init_xy": grid[i].tolist()}}, max_steps=m)
        for i, m in zip(indices, max_steps)
    ]


@pytest.fixture(scope="module")
def pools():
    with (
        ParallelRollout(0, camera_size=SIZE) as local,
        ParallelRollout(2, camera_size=SIZE, wait_for_resets=True) as parallel,
    ):
        yield local, parallel


def assert_same(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.spec == rb.spec
        assert (ra.success, ra.steps) == (rb.success, rb.steps), ra.spec
        ta, tb = ra.trajectory, rb.trajectory
        assert (ta is None) == (tb is None)
        if ta is not None:
            np.testing.assert_array_equal(ta.images, tb.images)
            np.testing.assert_array_equal(ta.proprio, tb.proprio)
            np.testing.assert_array_equal(ta.actions, tb.actions)
            np.testing.assert_array_equal(ta.rewards, tb.rewards)


def test_lockstep_same_results_for_any_worker_count(pools):
    local, parallel = pools
    # different lengths, so the two workers finish out of order and take episodes from the queue
    specs = pick_specs([0, 99, 45, 9, 90], [40, 6, 40, 11, 9])
    calls = []

    def policy(batch):
        calls.append(len(batch))
        return grasp_from_spec(batch)

    ours = parallel.run(policy, specs, record=True)
    # with wait_for_resets the batches follow from the specs alone: worker 0 runs episode 0 (40 steps at most),
    # worker 1 runs 1 (6), 2, ... so the first 6 rounds are batches of two, whatever the timing
    assert calls[:6] == [2] * 6, f"the two workers were not batched into one policy call: {calls[:8]}"
    theirs = local.run(grasp_from_spec, specs, record=True)
    assert [r.spec for r in ours] == specs, "results are not in spec order"
    assert_same(ours, theirs)
    assert (ours[1].steps, ours[3].steps, ours[4].steps) == (6, 11, 9), "max_steps stops an episode"
    for r in ours:
        t = r.trajectory
        assert t.images.shape == (r.steps, SIZE, SIZE, 3) and t.images.dtype == np.uint8
        assert t.proprio.shape == (r.steps, 16) and t.actions.shape == (r.steps, 7)
        assert t.instruction == "pick coke can"
    long_ones = [r for r in ours if r.spec.max_steps == 40]
    assert all(r.success for r in long_ones), "the proprio grasp controller should lift the can"
    assert all(r.steps < 40 for r in long_ones), "a successful episode ends at its success"
    # and without waiting for resets (batches then follow timing), still the same episodes
    parallel.wait_for_resets = False
    try:
        assert_same(parallel.run(grasp_from_spec, specs, record=True), theirs)
    finally:
        parallel.wait_for_resets = True


@pytest.fixture(scope="module")
def four_workers():
    with ParallelRollout(4, camera_size=SIZE, wait_for_resets=True) as rollout:
        yield rollout


def test_pipelined_lockstep_same_results_for_any_grouping(four_workers):
    rollout = four_workers
    specs = pick_specs([0, 99, 45, 9, 90, 30], [40, 6, 40, 11, 9, 12])
    runs = {}
    try:
        for groups, wait in [(1, True), (2, True), (2, False), (4, False)]:
            rollout.pipeline_groups, rollout.wait_for_resets = groups, wait
            runs[groups, wait] = rollout.run(grasp_from_spec, specs, record=True)
    finally:
        rollout.pipeline_groups, rollout.wait_for_resets = 1, True
    plain = runs[1, True]
    assert [r.spec for r in plain] == specs
    assert [r.steps for r in plain][1::2] == [6, 11, 12], "max_steps stops an episode"
    assert all(plain[i].success and plain[i].steps < 40 for i in (0, 2)), "the grasp controller lifts the can"
    for key, results in runs.items():
        assert [r.spec for r in results] == specs, f"{key}: results are not in spec order"
        assert_same(results, plain)


def test_pipelined_policy_calls_never_mix_groups_and_overlap_the_other_groups_steps(four_workers):
    """G=2 on 4 workers: each policy call holds one group's rows (slot % 2) and is made while the other group's
    workers have a step in flight (sent, reply not yet read); the groups take turns."""
    rollout = four_workers.start()
    specs = pick_specs([0, 1, 2, 3], [8, 8, 8, 8])  # seed = episode index
    slot_of: dict[int, int] = {}  # episode -> the worker slot it was reset on
    in_flight: set[int] = set()  # slots with a step command whose reply is unread
    for slot, w in enumerate(rollout._workers):

        def send(command, slot=slot, send=w.send):
            if command[0] == "step":
                in_flight.add(slot)
            if command[0] == "reset":
                slot_of[command[1].seed] = slot
            send(command)

        def recv(timeout, slot=slot, recv=w.recv):
            in_flight.discard(slot)
            return recv(timeout)

        w.send, w.recv = send, recv
    calls = []

    def policy(batch):
        calls.append(([slot_of[e] for e in batch.episodes], sorted(in_flight)))
        return grasp_from_spec(batch)

    rollout.pipeline_groups = 2
    try:
        results = rollout.run(policy, specs)
    finally:
        rollout.pipeline_groups = 1
        for w in rollout._workers or []:
            del w.send, w.recv
    assert [r.steps for r in results] == [8, 8, 8, 8]
    assert sorted(slot_of.values()) == [0, 1, 2, 3], "one episode per worker"
    groups = [{s % 2 for s in slots} for slots, _ in calls]
    assert all(len(g) == 1 for g in groups), f"a policy call mixed the groups: {calls}"
    assert all(len(slots) == 2 for slots, _ in calls), "with wait_for_resets each call holds its whole group"
    assert [g.pop() for g in groups] == [0, 1] * 8, "the groups take turns, 8 steps each"
    for slots, flying in calls[1:]:  # the first call comes before any step
        assert flying and all(s % 2 != slots[0] % 2 for s in flying), (
            f"the policy ran for slots {slots} while steps of {flying} were in flight; expected the other group's"
        )


def test_pipeline_groups_must_fit_the_workers():
    for workers, groups in [(2, 3), (0, 2), (2, 0)]:
        with pytest.raises(ValueError, match=rf"pipeline_groups .*\({max(workers, 1)}, num_workers={workers}\)"):
            ParallelRollout(workers, pipeline_groups=groups)
    assert ParallelRollout(2, pipeline_groups=2)._workers is None, "checked without starting workers"


def test_pipelined_failures_are_reported_and_stop_the_workers():
    specs = pick_specs([0, 1, 2, 3], [12, 12, 12, 12])
    rollout = ParallelRollout(2, render=False, pipeline_groups=2).start()
    try:
        procs = [w.process for w in rollout._workers]
        killed = []

        def killer(batch):
            if batch.steps.max() == 3 and not killed:
                os.kill(procs[1].pid, signal.SIGKILL)
                killed.append(True)
            return grasp_from_spec(batch)

        # slot 0 takes episode 0, slot 1 episode 1; the kill comes while worker 1 steps
        with pytest.raises(RolloutWorkerError, match=r"worker 1 .* died while running episode 1 .*(signal 9|exited)"):
            rollout.run(killer, specs)
        assert not any(p.is_alive() for p in procs) and rollout._workers is None

        def broken(batch):
            if batch.steps.max() == 2:
                raise RuntimeError("policy failed")
            return grasp_from_spec(batch)

        procs = [w.process for w in rollout.start()._workers]
        with pytest.raises(RuntimeError, match="policy failed"):
            rollout.run(broken, specs)
        assert not any(p.is_alive() for p in procs) and rollout._workers is None, "a raising policy closes the workers"
    finally:
        rollout.close()


def test_worker_side_expert_same_results_for_any_worker_count(pools):
    local, parallel = pools
    specs = pick_specs([0, 99, 55], [None, None, 4])  # the angled expert needs 6-9 steps: the third is cut short
    ours = parallel.run("expert:angled", specs, record=True)
    assert_same(ours, local.run("expert:angled", specs, record=True))
    assert ours[0].success and ours[1].success and ours[0].steps <= 80
    assert ours[2].steps == 4 and not ours[2].success
    assert ours[0].trajectory.actions[0, 6] == 1.0  # expert starts with the gripper open


def test_progress_bar_counts_episodes_and_leaves_results_alone(pools, capsys):
    local, _ = pools
    specs = pick_specs([0, 45, 99], [None, 5, 4])
    seen = []
    shown = local.run(grasp_from_spec, specs, on_result=lambda i, r: seen.append(i), progress="evaluating tiny")
    assert_same(shown, local.run(grasp_from_spec, specs))
    assert sorted(seen) == [0, 1, 2], "the caller's on_result still sees every episode"
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert "evaluating tiny" in bar and "3/3" in bar, bar
    assert "success=0.33" in bar, f"one of the three episodes (the only long one) succeeds: {bar}"
    assert "env_steps_per_s=" in bar, bar


def test_policy_must_return_one_action_per_row():
    with ParallelRollout(0, render=False) as local:
        with pytest.raises(ValueError, match=r"expected \(1, 7\)"):
            local.run(lambda batch: np.zeros((1, 6)), pick_specs([0], [3]))


def test_unknown_task_or_policy_string_is_refused_before_starting():
    rollout = ParallelRollout(2)
    with pytest.raises(ValueError, match="unknown task"):
        rollout.run("expert", [EpisodeSpec("stack_cubes", 0)])
    with pytest.raises(ValueError, match="not understood"):
        rollout.run("rt1", pick_specs([0], [3]))
    assert rollout._workers is None, "no worker should have been started"


@pytest.mark.parametrize("num_workers", [0, 2])
def test_exception_in_worker_names_the_episode(num_workers):
    bad = EpisodeSpec("pick_can", seed=3, options={"obj_init_options": {"init_xy": [0.1, 0.2, 0.3]}})
    specs = pick_specs([0], [2]) + [bad]
    rollout = ParallelRollout(num_workers, render=False)
    with pytest.raises(RolloutWorkerError, match=r"episode 1 \(task 'pick_can', seed 3") as err:
        rollout.run(grasp_from_spec, specs)
    assert "Traceback" in str(err.value) and "reset of" in str(err.value)
    assert rollout._workers is None, "workers are stopped after a failure"
    # the next run starts afresh and works
    assert rollout.run("expert", specs[:1])[0].steps == 2
    rollout.close()


def test_dead_worker_is_reported_not_waited_for():
    specs = pick_specs([0, 1, 2, 3], [12, 12, 12, 12])
    with ParallelRollout(2, render=False) as rollout:
        pid = rollout._workers[1].process.pid

        def killer(batch):
            if batch.steps.max() == 3:
                os.kill(pid, signal.SIGKILL)
            return grasp_from_spec(batch)

        with pytest.raises(RolloutWorkerError, match=r"worker 1 .* died while running episode 1 .*signal 9"):
            rollout.run(killer, specs)
        # expert mode too: kill a worker while it runs whole episodes
        rollout.start()
        procs = [w.process for w in rollout._workers]
        os.kill(procs[0].pid, signal.SIGKILL)
        with pytest.raises(RolloutWorkerError, match=r"worker 0 .*episode 0 .*(signal 9|exited)"):
            rollout.run("expert", specs)
        assert not any(p.is_alive() for p in procs), "close() after a failure ends every worker"


def test_close_ends_workers():
    rollout = ParallelRollout(2, render=False).start()
    procs = [w.process for w in rollout._workers]
    assert all(p.is_alive() for p in procs)
    rollout.close()
    assert not any(p.is_alive() for p in procs)
