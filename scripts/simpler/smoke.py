"""The real SimplerEnv through the project's adapter (envs/simpler.py): each task made, reset, stepped 20 times
with an absolute-gripper policy's actions (open, then close at step 5), its first image saved, in the
SimplerEnv venv (scripts/setup_simpler.sh):

    .venv-simpler/bin/python scripts/simpler/smoke.py OUT [prepackaged_config=false ...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from envs.simpler import make_simpler


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    results = {}
    for task in ("open_drawer", "close_drawer", "pick_can"):
        started = time.perf_counter()
        try:
            env = make_simpler(task, camera_size=224, gripper="absolute", **kwargs)
            obs, _ = env.reset(seed=0)
        except Exception as err:  # noqa: BLE001 - recorded per task, the others still run
            results[task] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            continue
        Image.fromarray(obs["image"]).save(out / f"{task}_reset.png")
        for step in range(20):
            action = np.zeros(7)
            action[6] = 1.0 if step < 5 else 0.0
            obs, _, _, _, info = env.step(action)
        env.close()
        results[task] = {
            "ok": True,
            "seconds": round(time.perf_counter() - started, 1),
            "image": list(obs["image"].shape),
            "proprio_len": len(obs["proprio"]),
            "tcp_pose_in_base": np.round(obs["proprio"][:7], 4).tolist(),
            "instruction": obs["instruction"],
            "success_after_20_steps": bool(info["success"]),
        }
    (out / "smoke.json").write_text(json.dumps({"env_kwargs": kwargs, "tasks": results}, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
