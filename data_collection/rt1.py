"""The RT-1 demonstrator as SimplerEnv runs it, behind the envs.rollout batched-policy interface.

RT-1 is a TensorFlow SavedModel exported by tf_agents' PolicySaver (e.g. `rt_1_x_tf_trained_for_002272480_step`).
Like SimplerEnv's RT1Inference, this loads it with `SavedModelPyTFEagerPolicy(load_specs_from_pbtxt=True)`,
fills an all-zero observation from the model's own spec and sets two of its keys each step:
    "image":                      the camera image, `tf.image.resize_with_pad` to 320 x 256, uint8;
    "natural_language_embedding": the Universal Sentence Encoder's [512] embedding of the instruction, from a
                                  local SavedModel directory (`tf.saved_model.load`, called on [instruction]).
The policy state starts from `get_initial_state(batch_size=1)` at every episode start and is carried per
episode, so episodes of a lockstep batch are independent (one model call per row, as SimplerEnv's batch 1).

Outputs -> the env's 7-D action:
    world_vector [3] * action_scale                      -> dx, dy, dz (m)
    rotation_delta [3], an axis-angle vector for the Google robot (SimplerEnv's "axis_angle" mode) * action_scale
                                                         -> axis-angle (rad)
    gripper_closedness_action [1] in [-1, 1], +1 = close, RELATIVE (values under 1e-2 in magnitude are zeroed,
        SimplerEnv's small-action filter):
        backend "simpler":  passed through (the Google robot's gripper controller is relative);
        backend "embedded": integrated into the panda's absolute gripper: closedness c = clip(c + g, 0, 1),
                            starting open (c = 0), action = 1 - 2c (+1 open .. -1 closed).
    terminate_episode is ignored (episodes end on success or at the step limit, as in SimplerEnv).

tensorflow and tf-agents come from the `rt1` extra (`pip install -e '.[rt1]'`): optional and heavy, so they are
imported only when RT-1 loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

RT1_IMAGE_WIDTH, RT1_IMAGE_HEIGHT = 320, 256
SMALL_GRIPPER = 1e-2
GripperMode = Literal["absolute", "relative"]

INSTALL_HINT = "the RT-1 demonstrator needs tensorflow and tf-agents: pip install -e '.[rt1]'"


def convert_rt1_action(
    raw: dict[str, Any], closedness: float, gripper: GripperMode, action_scale: float = 1.0
) -> tuple[np.ndarray, float]:
    """One RT-1 output (numpy dict) -> (7-D env action, new gripper closedness in [0, 1])."""
    world = np.asarray(raw["world_vector"], np.float64).reshape(3) * action_scale
    rotation = np.asarray(raw["rotation_delta"], np.float64).reshape(3) * action_scale
    g = float(np.asarray(raw["gripper_closedness_action"], np.float64).reshape(-1)[0])
    if abs(g) < SMALL_GRIPPER:
        g = 0.0
    if gripper == "relative":
        grip = g
    else:
        closedness = float(np.clip(closedness + g, 0.0, 1.0))
        grip = 1.0 - 2.0 * closedness
    return np.concatenate([world, rotation, [grip]]).astype(np.float32), closedness


class _HasTracingType(type):
    def __instancecheck__(cls, instance: Any) -> bool:
        return callable(getattr(instance, "__tf_tracing_type__", None))


class _SupportsTracing(metaclass=_HasTracingType):
    """isinstance(x, _SupportsTracing): x has a `__tf_tracing_type__` method (what TF's protocol checks)."""


def tolerate_tf_dict_wrappers() -> None:
    """Lets TensorFlow trace functions that return a tf.Module's dict attributes, as tf_agents' policies do.

    TF (2.15, still open in 2.20: tensorflow#62217) checks `isinstance(value, SupportsTracingProtocol)`, a
    typing_extensions Protocol; from typing_extensions 4.6 that check raises TypeError on TF's `_DictWrapper`.
    tf-agents pins typing_extensions 4.5 for that reason, but torch (which mani_skill needs in the same process)
    requires >= 4.10. Where the check is broken, this swaps in an equivalent attribute check; elsewhere it does
    nothing.
    """
    from tensorflow.python.trackable import data_structures
    from tensorflow.python.types import trace

    try:
        isinstance(data_structures._DictWrapper({}), trace.SupportsTracingProtocol)
    except TypeError:
        trace.SupportsTracingProtocol = _SupportsTracing


@dataclass
class _EpisodeState:
    policy_state: Any
    embedding: Any
    closedness: float = 0.0


class RT1Demonstrator:
    """A callable `policy(batch: envs.rollout.ObsBatch) -> actions [B, 7]` backed by an RT-1 SavedModel."""

    def __init__(
        self,
        saved_model: str | Path,
        embedder: str | Path,
        gripper: GripperMode = "absolute",
        action_scale: float = 1.0,
        image_width: int = RT1_IMAGE_WIDTH,
        image_height: int = RT1_IMAGE_HEIGHT,
    ):
        saved_model, embedder = Path(saved_model), Path(embedder)
        for name, path in (("rt1.saved_model", saved_model), ("rt1.embedder", embedder)):
            if not (path / "saved_model.pb").is_file():
                raise FileNotFoundError(f"{name}: {path} is not a TensorFlow SavedModel directory (no saved_model.pb)")
        try:
            import tensorflow as tf
            from tf_agents.policies import py_tf_eager_policy
            from tf_agents.specs import tensor_spec
            from tf_agents.trajectories import time_step as ts
        except ImportError as err:
            raise ImportError(INSTALL_HINT) from err
        tolerate_tf_dict_wrappers()
        self._tf, self._ts = tf, ts
        self.policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
            str(saved_model), load_specs_from_pbtxt=True, use_tf_function=True
        )
        self.embedder = tf.saved_model.load(str(embedder))
        self.gripper, self.action_scale = gripper, action_scale
        self.image_width, self.image_height = image_width, image_height
        spec = self.policy.time_step_spec.observation
        missing = [k for k in ("image", "natural_language_embedding") if k not in spec]
        if missing:
            raise ValueError(
                f"rt1.saved_model {saved_model}: its observation spec lacks {missing} "
                f"(has {sorted(spec)}); is it an RT-1 policy?"
            )
        self._zero_obs = tensor_spec.zero_spec_nest(tensor_spec.from_spec(spec))
        self._embeddings: dict[str, Any] = {}
        self._episodes: dict[int, _EpisodeState] = {}

    def _embed(self, instruction: str) -> Any:
        if instruction not in self._embeddings:
            self._embeddings[instruction] = self.embedder([instruction])[0]
        return self._embeddings[instruction]

    def raw_action(self, image: np.ndarray, state: _EpisodeState) -> dict[str, np.ndarray]:
        """One model call on a uint8 [H, W, 3] image; advances the episode's policy state."""
        tf = self._tf
        obs = dict(self._zero_obs)
        resized = tf.image.resize_with_pad(image, target_height=self.image_height, target_width=self.image_width)
        obs["image"] = tf.cast(resized, tf.uint8)
        obs["natural_language_embedding"] = state.embedding
        step = self.policy.action(self._ts.transition(obs, reward=np.zeros((), np.float32)), state.policy_state)
        state.policy_state = step.state
        return {k: np.asarray(v) for k, v in step.action.items()}

    def new_episode(self, instruction: str) -> _EpisodeState:
        return _EpisodeState(self.policy.get_initial_state(batch_size=1), self._embed(instruction))

    def __call__(self, batch: Any) -> np.ndarray:
        live = set(int(e) for e in batch.episodes)
        for episode in list(self._episodes):
            if episode not in live:  # finished episodes
                del self._episodes[episode]
        actions = np.zeros((len(batch), 7), np.float32)
        for row in range(len(batch)):
            episode = int(batch.episodes[row])
            if batch.steps[row] == 0 or episode not in self._episodes:
                self._episodes[episode] = self.new_episode(batch.instructions[row])
            state = self._episodes[episode]
            raw = self.raw_action(batch.images[row], state)
            actions[row], state.closedness = convert_rt1_action(raw, state.closedness, self.gripper, self.action_scale)
        return actions
