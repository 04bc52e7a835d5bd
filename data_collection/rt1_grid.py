"""Demonstrations over a grid of object placements: N successful episodes per grid point, resumable.

    python data_collection/rt1_grid.py                                  # configs/collect_embedded.yaml
    python data_collection/rt1_grid.py --grid 2x2 --successes_per_point 2 --out data/demos/tiny
    python data_collection/rt1_grid.py --demonstrator rt1 --rt1.saved_model ~/rt_1_x_tf_trained_for_002272480_step \\
        --rt1.embedder ~/universal-sentence-encoder-large-5 --backend simpler --out data/demos/rt1_simpler

The command over data_collection/collect.py (the collector, its config, the dataset folder's resume rules):
after Ctrl-C or kill -9 the same command continues where it stopped. `--format lerobot` also writes the
finished dataset as a LeRobotDataset (`--lerobot_out`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_collection.collect import CollectConfig, Collector, print_summary, write_lerobot_copy
from data_collection.dataset import DatasetError
from vla_razor.config import ConfigError, add_config_arguments, load_config, overrides_from_args
from vla_razor.runs import RunLockedError

DEFAULT_CONFIG = "configs/collect_embedded.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python data_collection/rt1_grid.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, help=f"YAML config (default: {DEFAULT_CONFIG} if present)")
    add_config_arguments(parser, CollectConfig)
    args = parser.parse_args(argv)
    try:
        path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
        cfg = load_config(CollectConfig, path, overrides_from_args(args))
        summary = Collector(cfg).run()
        if cfg.format == "lerobot":
            lerobot_out = write_lerobot_copy(cfg)
    except (ConfigError, DatasetError, FileNotFoundError, ImportError, RunLockedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: every finished episode is saved; rerun the same command to continue", file=sys.stderr)
        return 130
    print_summary(summary, cfg.out)
    if cfg.format == "lerobot":
        print(f"LeRobotDataset: {lerobot_out} (meta/info.json, data/*.parquet; meta/vla_razor.json: our fields)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
