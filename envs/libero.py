"""Adapter to LIBERO's tasks (robosuite 1.4 / MuJoCo), same contract as envs/wrapper.py: uint8 image, proprio
vector, instruction string, info["success"], 7-D action [xyz delta, rotation delta, gripper].

LIBERO pins robosuite 1.4.0, bddl 1.0.1 and mujoco < 3.9, so it lives in its own venv: `make setup-libero` builds
.venv-libero (scripts/setup_libero.sh). `libero` (optional) is imported only when a "libero" env is made, PIL
(optional) only where images are JPEG-coded or resized; everything else here is plain numpy, so the conversions are
tested without it.

Tasks are the registry's LIBERO records (envs/tasks.py: id "<suite>_<index>"). A task's placements are its 50 stored
initial states: reset option obj_init_options.init_state = [index, _] (x of the placement grid, floored; without it
the state is the episode seed modulo 50). Conventions follow OpenVLA's LIBERO evaluation, so that a checkpoint
fine-tuned on LIBERO (openvla-7b-finetuned-libero-*, unnorm key = the suite name) sees what it was trained on:
- images: rendered at `render_size` (256), rotated 180 degrees (LIBERO's cameras render upside down relative to the
  training data), JPEG-encoded and decoded (as the training data's RLDS builder stored them), then Lanczos-resized
  to the policy's `camera_size`; the wrist camera (`wrist=True`, obs["wrist_image"]) the same way;
- gripper: the policy's opening (default range 0 closed .. 1 open, OpenVLA's) is mapped to [-1, 1], binarized by
  its sign and negated, since LIBERO's panda takes -1 open .. +1 close;
- the first 6 action components go through unchanged (LIBERO's OSC_POSE controller takes them in [-1, 1] and
  scales them to 5 cm / 0.5 rad; they are clipped there);
- at reset the robot waits `num_steps_wait` (10) steps with the gripper open while objects settle, not counted in
  the episode;
- success is the env's own check of the task's BDDL goal, every step; it ends the episode (terminated), as does the
  record's max_steps (truncated; OpenVLA's limit per suite).
proprio: end-effector position (3, m), its orientation as axis-angle (3, rad), the two finger joints (2) - the state
OpenVLA's LIBERO evaluation builds.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, Sequence

import numpy as np

from envs.libero_suites import SUITE_TASKS
from envs.tasks import LIBERO_INIT_STATES, get_task

INSTALL_HINT = (
    "the 'libero' backend needs LIBERO (hf-libero 0.1.4 with robosuite 1.4.0, bddl 1.0.1, mujoco < 3.9 and its "
    "assets), which clashes with this venv's pins: run `make setup-libero` and use .venv-libero "
    "(.venv-libero/bin/vla-razor ...)"
)
NO_CONFIG_HINT = (
    "LIBERO's config is missing (its first import would stop at a question on stdin): set LIBERO_CONFIG_PATH to a "
    "folder holding config.yaml, or run in .venv-libero (make setup-libero writes it)"
)
DUMMY_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
"""What the robot does while objects settle at reset: nothing, gripper open (LIBERO's -1)."""
AGENTVIEW_ONLY = ("agentview",)
"""The cameras make_libero has LIBERO render when the wrist image is not kept (LIBERO's default adds
robot0_eye_in_hand): each camera is its own offscreen render of the same state, so leaving one out changes no other
observation (tests/envs/test_libero_render.py compares every frame with the two-camera env's)."""
CHEAP_RENDER_PARTS = ("antialiasing", "reflections")
"""What `cheap_render` turns off (True: both): MuJoCo's 4x multisample anti-aliasing of the offscreen buffer (the
model's visual/quality offsamples 4 -> 0) and reflections (the scene's mjRND_REFLECTION flag: a reflective box or
plane, e.g. LIBERO's stove base, has the whole scene drawn again mirrored every frame). LIBERO's lights cast no
shadows already (castshadow="false" in every scene), so shadows are not a part."""


def libero_record(task: str) -> Any:
    """The registry's LIBERO part of `task` (suite, index, name); a ValueError if `task` is no LIBERO task."""
    record = get_task(task)
    if record.libero is None:
        raise ValueError(f"task {task!r} is not a LIBERO task; LIBERO's ids are <suite>_<index>, e.g. libero_spatial_0")
    return record.libero


def init_state_index(options: dict | None, seed: int | None, n_states: int = LIBERO_INIT_STATES) -> int:
    """Which stored initial state an episode starts from: reset option obj_init_options.init_state's first value
    (floored, clipped to the states), else the seed modulo the number of states."""
    placement = ((options or {}).get("obj_init_options") or {}).get("init_state")
    if placement is None:
        return int(seed or 0) % n_states
    value = float(np.asarray(placement, dtype=np.float64).reshape(-1)[0])
    return int(min(max(math.floor(value), 0), n_states - 1))


def preprocess_image(image: np.ndarray, size: int | None, flip: bool = True, jpeg: bool = True) -> np.ndarray:
    """A LIBERO camera frame as OpenVLA's LIBERO policies saw their training images: rotated 180 degrees, through
    a JPEG encode / decode (quality 95), resized (Lanczos, antialiased) to size x size."""
    image = np.asarray(image)[..., :3]
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if flip:
        image = image[::-1, ::-1]
    if not jpeg and (size is None or image.shape[:2] == (size, size)):
        return np.ascontiguousarray(image)
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image))
    if jpeg:
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=95)
        pil = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if size is not None and pil.size != (size, size):
        pil = pil.resize((size, size), Image.LANCZOS)
    return np.asarray(pil)


def gripper_command(opening: float, gripper_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """A policy's gripper opening (gripper_range: (closed, open) values) -> LIBERO's command, -1 open .. +1 close:
    mapped to [-1, 1], binarized by its sign (0 stays 0), negated."""
    closed, opened = (float(v) for v in gripper_range)
    if opened == closed:
        raise ValueError(f"gripper_range: (closed, open) must differ, got {tuple(gripper_range)}")
    normalized = 2.0 * (float(opening) - closed) / (opened - closed) - 1.0
    return -float(np.sign(normalized))


def gripper_opening(command: Any, gripper_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """LIBERO's gripper command (-1 open .. +1 close, as its demonstrations store it) -> the policy's opening, as
    OpenVLA's LIBERO data transform makes its training labels: clipped to [0, 1] and inverted (1 open, 0 closed),
    then put on gripper_range (closed, open). `gripper_command` takes it back to the command."""
    closed, opened = (float(v) for v in gripper_range)
    return opened + (closed - opened) * np.clip(np.asarray(command, dtype=np.float64), 0.0, 1.0)


def env_action(action: Any, gripper_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """The policy's 7-D action -> LIBERO's: the 6 arm components as they are, the gripper converted."""
    out = np.asarray(action, dtype=np.float64).reshape(7).copy()
    out[6] = gripper_command(out[6], gripper_range)
    return out


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """robosuite's (x, y, z, w) quaternion -> axis-angle (unit axis times angle, rad)."""
    q = np.asarray(quat_xyzw, dtype=np.float64).reshape(4)
    w = float(np.clip(q[3], -1.0, 1.0))
    den = math.sqrt(max(1.0 - w * w, 0.0))
    if den < 1e-9:
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(w) / den


def make_proprio(obs: dict) -> np.ndarray:
    """[eef position (3), eef axis-angle (3), finger joints (2)] as float32."""
    return np.concatenate(
        [
            np.asarray(obs["robot0_eef_pos"], np.float64).reshape(3),
            quat_to_axis_angle(obs["robot0_eef_quat"]),
            np.asarray(obs["robot0_gripper_qpos"], np.float64).reshape(2),
        ]
    ).astype(np.float32)


def check_suite(installed: list[str], suite: str, ours: tuple[str, ...]) -> None:
    """Refuses an installed LIBERO whose suite lists other tasks than the registry (envs/libero_suites.py)."""
    if list(installed) != list(ours):
        raise RuntimeError(
            f"the installed LIBERO's {suite} lists other tasks than envs/libero_suites.py (made from hf-libero 0.1.4): "
            "task ids would name other tasks; install hf-libero 0.1.4 (make setup-libero)"
        )


def cheap_render_parts(value: bool | str | Sequence[str] | None) -> tuple[str, ...]:
    """make_libero's `cheap_render` as the parts it turns off: True all of CHEAP_RENDER_PARTS, False / None none,
    a name or a list of names those (a ValueError names the known ones)."""
    if value is None or value is False:
        return ()
    if value is True:
        return CHEAP_RENDER_PARTS
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in CHEAP_RENDER_PARTS]
    if unknown:
        raise ValueError(
            f"cheap_render: unknown part(s) {unknown}; known: true, false or a list of {CHEAP_RENDER_PARTS}"
        )
    return tuple(n for n in CHEAP_RENDER_PARTS if n in names)


def without_antialiasing(xml: str) -> str:
    """A robosuite model's XML with offscreen multisampling off (<visual><quality offsamples="0"/>): what a hard
    reset compiles, so that the render context it makes has no multisample buffer."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    visual = root.find("visual")
    if visual is None:
        visual = ElementTree.SubElement(root, "visual")
    quality = visual.find("quality")
    if quality is None:
        quality = ElementTree.SubElement(visual, "quality")
    quality.set("offsamples", "0")
    return ElementTree.tostring(root, encoding="unicode")


def apply_cheap_render(sim: Any, parts: Sequence[str]) -> None:
    """Turns `parts` off on `sim`'s offscreen render context (robosuite makes a new one at every hard reset):
    reflections by the scene's flag; anti-aliasing by rebuilding the context without multisampling where the
    model it was made from still asks for it (at make time; a hard reset's model already says offsamples 0)."""
    context = getattr(sim, "_render_context_offscreen", None)
    if context is None or not parts:
        return
    import mujoco

    if "reflections" in parts:
        context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    if "antialiasing" in parts and context.con.offSamples != 0:
        context.gl_ctx.make_current()
        context.model.vis.quality.offsamples = 0
        context.con.free()
        context._set_mujoco_context_and_buffers()


def _import_libero() -> tuple[Any, Any, Any]:
    """LIBERO's benchmark, path lookup and env class, with a clear error where it is missing or unconfigured."""
    config = os.path.join(os.environ.get("LIBERO_CONFIG_PATH", os.path.expanduser("~/.libero")), "config.yaml")
    try:
        import libero  # noqa: F401  (the outer package: cheap, asks nothing)
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    if not os.path.isfile(config):
        raise RuntimeError(NO_CONFIG_HINT)
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless: a GPU's EGL, or Mesa's on a CPU
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    return benchmark, get_libero_path, OffScreenRenderEnv


class LiberoAdapter:
    """Wraps a LIBERO OffScreenRenderEnv in the vla-razor contract (the module docstring says how)."""

    def __init__(
        self,
        env: Any,
        task: str,
        init_states: np.ndarray,
        instruction: str,
        camera_size: int | None = 224,
        render: bool = True,
        wrist: bool = False,
        num_steps_wait: int = 10,
        gripper_range: tuple[float, float] = (0.0, 1.0),
        jpeg: bool = True,
        cheap_render: Sequence[str] = (),
    ):
        self.env, self.task, self.init_states, self.instruction = env, task, init_states, instruction
        self.cheap_render = tuple(cheap_render)
        self.camera_size, self.render_images, self.wrist = camera_size, render, wrist
        self.num_steps_wait, self.gripper_range, self.jpeg = num_steps_wait, tuple(gripper_range), jpeg
        self.init_state = 0
        self.max_steps, self.steps = get_task(task).max_steps, 0

    @property
    def unwrapped(self) -> Any:
        return self.env

    def _convert(self, obs: dict) -> dict[str, Any]:
        out: dict[str, Any] = {"instruction": self.instruction, "proprio": make_proprio(obs)}
        if self.render_images:
            out["image"] = preprocess_image(obs["agentview_image"], self.camera_size, jpeg=self.jpeg)
            if self.wrist:
                out["wrist_image"] = preprocess_image(obs["robot0_eye_in_hand_image"], self.camera_size, jpeg=self.jpeg)
        else:
            out["image"] = np.zeros((0, 0, 3), np.uint8)
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.init_state, self.steps = init_state_index(options, seed, len(self.init_states)), 0
        if seed is not None:
            self.env.seed(int(seed) % 2**31)
        self.env.reset()
        if self.cheap_render:  # a hard reset made a new render context, with the scene's default flags
            apply_cheap_render(self.env.sim, self.cheap_render)
        obs = self.env.set_init_state(self.init_states[self.init_state])
        for _ in range(self.num_steps_wait):
            obs, _, _, _ = self.env.step(list(DUMMY_ACTION))
        return self._convert(obs), {"success": bool(self.env.check_success()), "init_state": self.init_state}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, _, info = self.env.step(env_action(action, self.gripper_range).tolist())
        info = dict(info or {})
        info["success"] = bool(self.env.check_success())
        self.steps += 1  # the task's own limit (its record's, OpenVLA's per suite) truncates, as the other backends'
        return self._convert(obs), float(reward), info["success"], self.steps >= self.max_steps, info

    def close(self) -> None:
        self.env.close()


def make_libero(
    task: str,
    camera_size: int | None = 224,
    render: bool = True,
    render_size: int = 256,
    wrist: bool = False,
    hard_reset: bool = True,
    num_steps_wait: int = 10,
    gripper_range: tuple[float, float] | list[float] = (0.0, 1.0),
    jpeg: bool = True,
    cheap_render: bool | str | Sequence[str] = False,
    **kwargs: Any,
) -> LiberoAdapter:
    """LIBERO's `task` (a registry id, e.g. "libero_spatial_0") behind the vla-razor contract.

    render_size: side LIBERO's cameras render at (256 as OpenVLA's evaluation), before the resize to camera_size;
    render=False: no cameras (proprio only); wrist: also the wrist camera as obs["wrist_image"] (without it LIBERO
    renders only the agent view, camera_names AGENTVIEW_ONLY: the same images and states as with both cameras, one
    render a step instead of two; a camera_names kwarg overrides it);
    hard_reset: LIBERO's default True rebuilds the MuJoCo model at every reset; False reuses it (much cheaper; the
    stored initial state is set either way, but episodes come out close to, not bit-identical with, a hard reset's:
    docs/results/libero/); num_steps_wait: settling steps at reset; gripper_range: the policy's
    (closed, open) gripper values ([-1, 1] for the embedded world's policies); jpeg: the JPEG round trip of OpenVLA's
    training images; cheap_render: True renders without anti-aliasing and reflections (CHEAP_RENDER_PARTS; a list
    names some of them), several times faster on a CPU's software renderer but other images than LIBERO's and
    OpenVLA's, so off by default; kwargs go to LIBERO's env (e.g. control_freq, camera_names, render_gpu_device_id).
    """
    parts = cheap_render_parts(cheap_render)
    where = libero_record(task)
    benchmark, get_libero_path, env_class = _import_libero()
    suite = benchmark.get_benchmark_dict()[where.suite]()

    check_suite([t.name for t in suite.tasks], where.suite, SUITE_TASKS[where.suite])
    libero_task = suite.get_task(where.index)
    if not wrist:  # LIBERO's default renders the wrist camera too, every step, whether or not it is kept
        kwargs.setdefault("camera_names", list(AGENTVIEW_ONLY))
    env = env_class(
        bddl_file_name=os.path.join(get_libero_path("bddl_files"), libero_task.problem_folder, libero_task.bddl_file),
        camera_heights=render_size,
        camera_widths=render_size,
        use_camera_obs=render,
        hard_reset=hard_reset,
        **kwargs,
    )
    if "antialiasing" in parts:  # hard resets compile the model without multisampling ...
        env.env.set_xml_processor(without_antialiasing)
    apply_cheap_render(env.sim, parts)  # ... and the context made now loses it here
    env.seed(0)
    return LiberoAdapter(
        env,
        task,
        suite.get_task_init_states(where.index),
        libero_task.language,
        camera_size=camera_size,
        render=render,
        wrist=wrist,
        num_steps_wait=num_steps_wait,
        gripper_range=tuple(gripper_range),
        jpeg=jpeg,
        cheap_render=parts,
    )
