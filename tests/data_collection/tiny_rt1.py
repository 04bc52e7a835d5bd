"""Exports a tiny RT-1 stand-in with RT-1's SavedModel interface, and a tiny sentence encoder.

The policy is a tf_agents TFPolicy saved by PolicySaver (as RT-1 checkpoints are): observation keys image
[256, 320, 3] uint8, natural_language_embedding [512], natural_language_instruction (string) and
gripper_closed [1] (one of RT-1's many other keys, left at zero by the demonstrator); actions world_vector
[3], rotation_delta [3], gripper_closedness_action [1], terminate_episode [3] (int32), plus RT-1's base
displacement outputs; a policy state with a step counter. Its outputs are simple functions of the image,
the embedding and the step, so a test can check every conversion:
    world_vector   = [0.02 * mean pixel / 255, 0.01 * emb[0], -0.005]
    rotation_delta = [0, 0, 0.05 * emb[1]]
    gripper_closedness_action = 0.5 from step 4 on (relative "close"), else 0.005 (under the small-action filter)
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tf_agents.policies import policy_saver, tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

CLOSE_FROM_STEP = 4


class TinyRT1(tf_policy.TFPolicy):
    def __init__(self) -> None:
        observation = {
            "image": tensor_spec.TensorSpec([256, 320, 3], tf.uint8, "image"),
            "natural_language_embedding": tensor_spec.TensorSpec([512], tf.float32, "natural_language_embedding"),
            "natural_language_instruction": tensor_spec.TensorSpec([], tf.string, "natural_language_instruction"),
            "gripper_closed": tensor_spec.TensorSpec([1], tf.float32, "gripper_closed"),
        }
        actions = {
            "world_vector": tensor_spec.BoundedTensorSpec([3], tf.float32, -1.0, 1.0, "world_vector"),
            "rotation_delta": tensor_spec.BoundedTensorSpec([3], tf.float32, -1.6, 1.6, "rotation_delta"),
            "gripper_closedness_action": tensor_spec.BoundedTensorSpec(
                [1], tf.float32, -1.0, 1.0, "gripper_closedness_action"
            ),
            "terminate_episode": tensor_spec.BoundedTensorSpec([3], tf.int32, 0, 1, "terminate_episode"),
            "base_displacement_vector": tensor_spec.BoundedTensorSpec(
                [2], tf.float32, -1.0, 1.0, "base_displacement_vector"
            ),
            "base_displacement_vertical_rotation": tensor_spec.BoundedTensorSpec(
                [1], tf.float32, -3.2, 3.2, "base_displacement_vertical_rotation"
            ),
        }
        state = {"step_num": tensor_spec.TensorSpec([1], tf.int32, "step_num")}
        super().__init__(ts.time_step_spec(observation), actions, policy_state_spec=state)
        self.scale = tf.Variable(1.0, name="scale")

    def _distribution(self, time_step, policy_state):  # noqa: ANN001 - tf_agents' signature
        raise NotImplementedError("deterministic policy: use action()")

    def _action(self, time_step, policy_state, seed):  # noqa: ANN001
        obs = time_step.observation
        brightness = tf.reduce_mean(tf.cast(obs["image"], tf.float32), axis=[1, 2, 3]) / 255.0
        emb = obs["natural_language_embedding"]
        step = policy_state["step_num"]
        zero = tf.zeros_like(brightness)
        world = tf.stack([0.02 * brightness, 0.01 * emb[:, 0], zero - 0.005], axis=-1) * self.scale
        rotation = tf.stack([zero, zero, 0.05 * emb[:, 1]], axis=-1) * self.scale
        gripper = tf.where(step >= CLOSE_FROM_STEP, 0.5, 0.005)
        action = {
            "world_vector": world,
            "rotation_delta": rotation,
            "gripper_closedness_action": gripper,
            "terminate_episode": tf.one_hot(tf.zeros_like(step[:, 0]), 3, dtype=tf.int32),
            "base_displacement_vector": tf.zeros_like(world[:, :2]),
            "base_displacement_vertical_rotation": tf.zeros_like(gripper),
        }
        return policy_step.PolicyStep(action, {"step_num": step + 1}, ())


class TinySentenceEncoder(tf.Module):
    """Callable like the Universal Sentence Encoder: [N] strings -> [N, 512] float32."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        h = tf.cast(tf.strings.to_hash_bucket_fast(texts, 1000), tf.float32) / 1000.0
        return (h[:, None] + 0.5) * tf.linspace(1.0, 0.1, 512)[None, :]


def export(root: Path) -> tuple[Path, Path]:
    """Writes <root>/rt1 (policy) and <root>/use (encoder); returns both paths."""
    from data_collection.rt1 import tolerate_tf_dict_wrappers

    tolerate_tf_dict_wrappers()  # PolicySaver traces the policy's dict attributes (see its docstring)
    policy_dir, encoder_dir = root / "rt1", root / "use"
    policy_saver.PolicySaver(TinyRT1(), batch_size=None).save(str(policy_dir))
    tf.saved_model.save(TinySentenceEncoder(), str(encoder_dir))
    return policy_dir, encoder_dir
