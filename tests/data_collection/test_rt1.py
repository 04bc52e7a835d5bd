"""The RT-1 demonstrator, for real: a tiny SavedModel with RT-1's interface, exported by tf_agents' PolicySaver,
loaded through data_collection/rt1.py, collecting an episode on the embedded world via rt1_grid.py.

Needs the `rt1` extra (tensorflow, tf-agents): `make test-rt1` runs this file in its own venv (.venv-rt1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mani_skill")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf_agents")

from data_collection.dataset import DemoDataset  # noqa: E402
from data_collection.rt1 import RT1Demonstrator, convert_rt1_action  # noqa: E402
from data_collection.rt1_grid import main  # noqa: E402

from tests.data_collection import tiny_rt1  # noqa: E402


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_rt1.export(tmp_path_factory.mktemp("rt1"))


def test_rt1_collects_an_episode_with_converted_actions(tiny_models: tuple[Path, Path], tmp_path: Path) -> None:
    policy_dir, encoder_dir = tiny_models
    out = tmp_path / "ds"
    code = main(
        [
            "--demonstrator",
            "rt1",
            "--rt1.saved_model",
            str(policy_dir),
            "--rt1.embedder",
            str(encoder_dir),
            "--grid",
            "1x1",
            "--successes_per_point",
            "1",
            "--max_attempts_per_point",
            "1",
            "--keep_failures",
            "true",
            "--max_steps",
            "7",
            "--camera_size",
            "32",
            "--workers",
            "0",
            "--progress",
            "false",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    ds = DemoDataset(out)
    assert len(ds) == 1 and ds.source_type == "rt1"
    ep = ds.load(0)
    assert ep.actions.shape == (7, 7) and not ep.meta.success

    # Recompute what RT-1 should have done on the stored frames, straight through TensorFlow.
    from tf_agents.policies import py_tf_eager_policy
    from tf_agents.specs import tensor_spec
    from tf_agents.trajectories import time_step as ts

    policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(str(policy_dir), load_specs_from_pbtxt=True)
    embedding = tf.saved_model.load(str(encoder_dir))(["pick coke can"])[0].numpy()
    obs = tensor_spec.zero_spec_nest(tensor_spec.from_spec(policy.time_step_spec.observation))
    state = policy.get_initial_state(batch_size=1)
    closedness = 0.0
    for t, image in enumerate(ep.images):
        resized = tf.cast(tf.image.resize_with_pad(image, target_height=256, target_width=320), tf.uint8)
        assert resized.shape == (256, 320, 3)
        obs = {**obs, "image": resized, "natural_language_embedding": embedding}
        step = policy.action(ts.transition(obs, reward=np.zeros((), np.float32)), state)
        state = step.state
        raw = {k: np.asarray(v) for k, v in step.action.items()}
        # the tiny model's definition, so the inputs reached it as RT-1 would get them
        np.testing.assert_allclose(
            raw["world_vector"],
            [0.02 * resized.numpy().mean() / 255, 0.01 * embedding[0], -0.005],
            rtol=1e-5,
            atol=1e-7,
        )
        expected, closedness = convert_rt1_action(raw, closedness, "absolute")
        np.testing.assert_allclose(ep.actions[t], expected, rtol=1e-6, atol=1e-7)
    # axis-angle passes through; the relative gripper (0.005 filtered, then +0.5 a step) becomes absolute
    np.testing.assert_allclose(ep.actions[:, 3:5], 0.0)
    np.testing.assert_allclose(ep.actions[:, 5], 0.05 * embedding[1], rtol=1e-5)
    np.testing.assert_allclose(ep.actions[:, 6], [1, 1, 1, 1, 0, -1, -1])


def test_rt1_missing_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="rt1.saved_model"):
        RT1Demonstrator(tmp_path / "nope", tmp_path / "nope2")
