"""make_libero's rendering on the real LIBERO (skipped where LIBERO is not installed, as in CI; run it in
.venv-libero: PYTHONPATH=. .venv-libero/bin/python -m pytest tests/envs/test_libero_render.py): cheap_render, on
envs of libero_spatial_0 at 64 px (its stove base is a reflective box, so both parts show in its agent view), and
the agent view rendered alone when the wrist image is not kept."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import envs

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("libero") is None, reason="LIBERO is not installed here (make setup-libero: .venv-libero)"
)
TASK, STATE = "libero_spatial_0", {"obj_init_options": {"init_state": [3, 0]}}


def _render_state(env) -> tuple[int, int]:
    """(offscreen multisamples, reflection flag) of the context the env renders with now."""
    import mujoco

    context = env.unwrapped.sim._render_context_offscreen
    return int(context.con.offSamples), int(context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION])


def _first_image(cheap_render, hard_reset: bool) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The agent view after the second reset to the same stored state (raw: no JPEG, no resize), and the render
    settings after make and after each reset."""
    env = envs.make(TASK, "libero", camera_size=None, render_size=64, jpeg=False, hard_reset=hard_reset, **cheap_render)
    try:
        states = [_render_state(env)]
        for _ in range(2):  # the second reset is a hard reset's fresh model and render context
            obs, _ = env.reset(seed=0, options=STATE)
            states.append(_render_state(env))
        return obs["image"].astype(np.int64), states
    finally:
        env.close()


def test_cheap_render_is_off_by_default_changes_the_image_and_survives_hard_resets():
    default, default_states = _first_image({}, hard_reset=False)  # no cheap_render given: LIBERO's own rendering
    assert default_states == [(4, 1)] * 3  # 4x multisampling, reflections on
    cheap, cheap_states = _first_image({"cheap_render": True}, hard_reset=False)
    assert cheap_states == [(0, 0)] * 3
    rebuilt, rebuilt_states = _first_image({"cheap_render": True}, hard_reset=True)
    assert rebuilt_states == [(0, 0)] * 3  # every hard reset's new context is cheap too

    changed = np.abs(default - cheap)
    assert changed.mean() > 1.0 and (changed.sum(-1) > 0).mean() > 0.05  # measured: mean 4.3, 21 % of the pixels
    # a hard reset's cheap image is a soft reset's (up to the few levels hard_reset=False differs by), not LIBERO's
    assert np.abs(rebuilt - cheap).mean() < 0.2 * changed.mean()


def test_each_part_alone_changes_the_image():
    default, _ = _first_image({}, hard_reset=False)
    for part, state in (("antialiasing", (0, 1)), ("reflections", (4, 0))):
        image, states = _first_image({"cheap_render": [part]}, hard_reset=False)
        assert states == [state] * 3, part
        assert np.abs(default - image).mean() > 0.5, part  # measured: antialiasing 3.7, reflections 1.1


def _rendered_episode(monkeypatch, wrist: bool, hard_reset: bool) -> tuple[list[dict], list[dict], set[str]]:
    """Two resets to the same stored state, each followed by the same 5 actions: the adapter's observations, LIBERO's
    raw ones (agent view, proprio, object states) and the cameras LIBERO rendered."""
    from robosuite.utils.binding_utils import MjSim

    rendered: set[str] = set()
    render = MjSim.render

    def recording_render(self, *args, camera_name=None, **kwargs):
        rendered.add(camera_name)
        return render(self, *args, camera_name=camera_name, **kwargs)

    monkeypatch.setattr(MjSim, "render", recording_render)  # every sim, a hard reset's new ones too
    env = envs.make(TASK, "libero", camera_size=None, render_size=64, jpeg=False, hard_reset=hard_reset, wrist=wrist)
    raw: list[dict] = []
    convert = env._convert
    env._convert = lambda obs: (raw.append({k: np.array(v) for k, v in obs.items()}), convert(obs))[1]
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 7))
    try:
        seen = []
        for _ in range(2):
            seen.append(env.reset(seed=0, options=STATE)[0])
            seen += [env.step(action)[0] for action in actions]
        return seen, raw, rendered
    finally:
        env.close()
        monkeypatch.undo()


@pytest.mark.parametrize("hard_reset", [True, False])
def test_without_wrist_only_the_agent_view_renders_and_nothing_else_changes(monkeypatch, hard_reset):
    """wrist=False renders agentview alone (LIBERO's default also renders robot0_eye_in_hand every step); every
    frame's agent view, proprio and LIBERO's other observations stay bit-identical to the two-camera env's."""
    alone, alone_raw, alone_cameras = _rendered_episode(monkeypatch, wrist=False, hard_reset=hard_reset)
    both, both_raw, both_cameras = _rendered_episode(monkeypatch, wrist=True, hard_reset=hard_reset)
    assert alone_cameras == {"agentview"} and both_cameras == {"agentview", "robot0_eye_in_hand"}
    assert len(alone) == len(both) == 12
    for one, two, one_raw, two_raw in zip(alone, both, alone_raw, both_raw):
        assert set(one) == {"instruction", "proprio", "image"} and set(two) == set(one) | {"wrist_image"}
        np.testing.assert_array_equal(one["image"], two["image"])
        np.testing.assert_array_equal(one["proprio"], two["proprio"])
        assert set(two_raw) - set(one_raw) == {"robot0_eye_in_hand_image"}
        for key in one_raw:
            np.testing.assert_array_equal(one_raw[key], two_raw[key], err_msg=key)
    assert len({a["image"].tobytes() for a in alone}) > 2  # the actions moved the arm: the frames are not one
