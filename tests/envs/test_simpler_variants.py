"""SimplerEnv's variant lists and its success aggregation (envs/simpler_variants.py), against the numbers its scripts
and tools/calc_metrics_evaluation_videos.py use; and how make_simpler resolves a task's env (SimplerEnv itself
cannot be installed in CI, so its ENVIRONMENT_MAP is given here in its shape)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from envs.simpler import check_stage_asset, resolve_env, stage_asset
from envs.simpler_variants import (
    GOOGLE_ROBOT,
    aggregate,
    coke_can_episodes,
    drawer_episodes,
    find_variant,
    variants,
    yaw_quat,
)


def test_drawer_variant_aggregation_is_three_drawers_times_seven_settings_on_a_3x3_robot_grid():
    for task, action in (("open_drawer", "open"), ("close_drawer", "close")):
        vs = variants(task, "variant_aggregation")
        assert len(vs) == 21 and len({v.cell for v in vs}) == 21 and {v.group for v in vs} == {action}
        assert {v.simpler_task for v in vs} == {
            f"google_robot_{action}_{d}_drawer" for d in ("top", "middle", "bottom")
        }
        scenes = {v.env_kwargs["scene_name"] for v in vs}
        assert scenes == {"frl_apartment_stage_simple", "modern_bedroom_no_roof", "modern_office_no_roof"}
        assert {v.env_kwargs.get("light_mode") for v in vs} == {None, "brighter", "darker"}
        assert {v.env_kwargs.get("station_name") for v in vs} == {None, "mk_station2", "mk_station3"}
        assert all(v.env_kwargs["shader_dir"] == "rt" and len(v.episodes) == 9 for v in vs)
    xy = [e["robot_init_options"]["init_xy"] for e in drawer_episodes()]
    assert xy == [[x, y] for x in (0.65, 0.75, 0.85) for y in (-0.2, 0.0, 0.2)]


def test_drawer_visual_matching_is_four_urdfs_times_nine_overlays_per_drawer():
    vs = variants("open_drawer", "visual_matching")
    assert len(vs) == 3 * 4 * 9 and len({v.cell for v in vs}) == 3 * 4
    a2 = find_variant("open_drawer", "open/bottom/urdf_recolor_cabinet_visual_matching_1/overlay_a2")
    assert a2.env_kwargs["rgb_overlay_path"].endswith("real_inpainting/open_drawer_a2.png")
    assert a2.env_kwargs["scene_name"] == "dummy_drawer" and a2.env_kwargs["station_name"] == "mk_station_recolor"
    (episode,) = a2.episodes
    assert episode["robot_init_options"]["init_xy"] == [0.889, -0.203]
    # euler2quat(0, 0, -0.06) * [0, 0, 0, 1] (wxyz)
    np.testing.assert_allclose(episode["robot_init_options"]["init_rot_quat"], [math.sin(0.03), 0, 0, math.cos(0.03)])
    assert yaw_quat(0.0) == [0.0, 0.0, 0.0, 1.0]


def test_coke_can_variants_per_orientation_and_the_5x5_can_grid():
    vs = variants("pick_can", "variant_aggregation")
    assert len(vs) == 3 * 9 and {v.group for v in vs} == {"horizontal", "vertical", "standing"}
    assert {v.simpler_task for v in vs if v.group == "standing"} == {"google_robot_pick_standing_coke_can"}
    distractors = [v for v in vs if "distractors" in v.name]
    assert {v.env_kwargs["env_id"] for v in distractors} == {"GraspSingleOpenedCokeCanDistractorInScene-v0"}
    vm = variants("pick_can", "visual_matching")
    assert len(vm) == 3 * 4 and {v.env_kwargs["urdf_version"] for v in vm} == {
        "None",
        "recolor_tabletop_visual_matching_1",
        "recolor_tabletop_visual_matching_2",
        "recolor_cabinet_visual_matching_1",
    }
    episodes = coke_can_episodes()
    assert len(episodes) == 25 and all(e["robot_init_options"]["init_xy"] == [0.35, 0.20] for e in episodes)
    xs = sorted({e["obj_init_options"]["init_xy"][0] for e in episodes})
    ys = sorted({e["obj_init_options"]["init_xy"][1] for e in episodes})
    np.testing.assert_allclose(xs, np.linspace(-0.35, -0.12, 5))
    np.testing.assert_allclose(ys, np.linspace(-0.02, 0.42, 5))
    assert all(v.env_kwargs[k] == GOOGLE_ROBOT[k] for v in vs + vm for k in GOOGLE_ROBOT)


def test_unknown_variant_or_protocol_is_refused_with_the_names():
    with pytest.raises(ValueError, match="open/top/base"):
        find_variant("open_drawer", "open/top/nope")
    with pytest.raises(ValueError, match="variant_aggregation"):
        variants("open_drawer", "both")


def test_aggregation_is_a_mean_of_cell_means_then_of_groups():
    vs = variants("pick_can", "variant_aggregation")
    successes = {
        "horizontal/base": [True, False, False],  # 1/3
        "horizontal/lighting_darker": [True, True],  # 1
        "vertical/base": [False, False, False, False],  # 0
    }
    out = aggregate(vs, successes)
    assert out["groups"] == pytest.approx({"horizontal": 2 / 3, "vertical": 0.0})  # not the pooled 3/5
    assert out["success"] == pytest.approx(1 / 3)  # mean over orientations
    assert out["episodes"]["horizontal/base"] == 3
    assert not out["complete"] and len(out["missing"]) == 27 - 3


def test_visual_matching_cells_pool_their_overlays():
    vs = variants("close_drawer", "visual_matching")
    cell = "close/top/urdf_None"
    successes = {f"{cell}/overlay_a0": [True], f"{cell}/overlay_a1": [False], f"{cell}/overlay_b0": [False]}
    successes["close/middle/urdf_None/overlay_a0"] = [True]
    out = aggregate(vs, successes)
    assert out["cells"] == pytest.approx({cell: 1 / 3, "close/middle/urdf_None": 1.0})
    assert out["episodes"][cell] == 3
    assert out["success"] == pytest.approx((1 / 3 + 1) / 2)  # one group: the cells' mean
    full = aggregate(vs, {v.name: [True] for v in vs})
    assert full["complete"] and full["success"] == 1.0 and len(full["cells"]) == 12
    assert math.isnan(aggregate(vs, {})["success"])


ENVIRONMENT_MAP = {  # SimplerEnv's, for the tasks used here
    "google_robot_pick_coke_can": ("GraspSingleOpenedCokeCanInScene-v0", {}),
    "google_robot_pick_horizontal_coke_can": ("GraspSingleOpenedCokeCanInScene-v0", {"lr_switch": True}),
    "google_robot_open_top_drawer": ("OpenTopDrawerCustomInScene-v0", {}),
    "google_robot_open_middle_drawer": ("OpenMiddleDrawerCustomInScene-v0", {}),
}


def test_resolve_env_precedence():
    root = Path("/clone")
    env_id, options, episodes = resolve_env("open_drawer", ENVIRONMENT_MAP, root)
    assert env_id == "OpenTopDrawerCustomInScene-v0" and options == {"prepackaged_config": True} and episodes == ()
    env_id, options, episodes = resolve_env(
        "open_drawer",
        ENVIRONMENT_MAP,
        root,
        variants={"open_drawer": "open/middle/lighting_darker", "pick_can": "horizontal/base"},
        shader_dir="ibl",
        task_kwargs={"open_drawer": {"light_mode": "brighter"}, "pick_can": {"scene_name": "dummy_tabletop"}},
    )
    assert env_id == "OpenMiddleDrawerCustomInScene-v0" and len(episodes) == 9
    assert options["shader_dir"] == "ibl" and options["light_mode"] == "brighter"  # kwargs, then task_kwargs win
    assert options["prepackaged_config"] is False and options["control_freq"] == 3
    assert options["scene_name"] == "frl_apartment_stage_simple"
    _, options, episodes = resolve_env(
        "pick_can", ENVIRONMENT_MAP, root, variants={"pick_can": "horizontal/urdf_None"}, task_kwargs={}
    )
    assert options["lr_switch"] is True and options["success_from_episode_stats"] is False and len(episodes) == 25
    assert (
        options["rgb_overlay_path"] == "/clone/ManiSkill2_real2sim/data/real_inpainting/google_coke_can_real_eval_1.png"
    )
    with pytest.raises(ValueError, match="google_robot_open_top_drawer"):
        resolve_env("open_drawer", ENVIRONMENT_MAP, root, simpler_tasks={"open_drawer": "google_robot_open_drawerz"})


def test_stage_asset_and_its_check(tmp_path):
    root = tmp_path / "hab2_bench_assets"
    (root / "stages").mkdir(parents=True)
    (root / "stages" / "frl_apartment_stage_simple.glb").write_bytes(b"glTF" * 1000)
    (root / "stages" / "modern_office_no_roof.glb").write_text("version https://git-lfs.github.com/spec/v1\n")
    drawer = find_variant("open_drawer", "open/top/base").env_kwargs
    assert stage_asset("open_drawer", drawer, root) == root / "stages" / "frl_apartment_stage_simple.glb"
    check_stage_asset("open_drawer", stage_asset("open_drawer", drawer, root))
    assert stage_asset("open_drawer", {"prepackaged_config": True}, root) is None  # dummy_drawer, built in code
    assert stage_asset("pick_can", {"scene_name": "dummy_tabletop"}, root) is None
    can = stage_asset("pick_can", {"prepackaged_config": True, "scene_name": "dummy_tabletop"}, root)
    assert can == root / "stages" / "google_pick_coke_can_1_v4.glb"  # the prepackaged config picks its own
    with pytest.raises(FileNotFoundError, match="google_pick_coke_can_1_v4.glb is missing"):
        check_stage_asset("pick_can", stage_asset("pick_can", {}, root))
    office = find_variant("close_drawer", "close/middle/background_office").env_kwargs
    with pytest.raises(FileNotFoundError, match="git-lfs pointer"):
        check_stage_asset("close_drawer", stage_asset("close_drawer", office, root))
