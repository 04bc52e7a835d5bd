"""Run folders: the one place a training run leaves its results (DESIGN.md section 6).

``runs/<experiment>/<run-name>/`` holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one
``{"step", "split", "name", "value"}`` object a line), ``points.jsonl`` (mid-training checkpoints that
analysis counts as points), ``checkpoints/*.safetensors`` and ``summary.json``. The summary is written
last and atomically: its presence is what marks a run finished, so an interrupted sweep reruns exactly the
runs without one. Every file that a reader may load is written to a temporary name first and renamed.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import torch
import yaml
from safetensors.torch import load_file, save_file

from vla_razor.config import ConfigError

SUMMARY = "summary.json"
T = TypeVar("T")


def default_file_mode(directory: bool = False) -> int:
    """0o666 (a folder: 0o777) less the umask: what open() / mkdir() would give (mkstemp's and mkdtemp's
    temporaries are 0o600 / 0o700, which a shared group could not read)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` so that ``path`` is either its old content or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_folder(path: Path, write: Callable[[Path], T]) -> T:
    """`write(tmp)` fills a fresh temporary folder next to `path`, which then replaces `path` by a rename: a reader
    sees the whole folder (a saved model) or none of it. Returns what `write` returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        os.chmod(tmp, default_file_mode(directory=True))
        result = write(tmp)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def save_policy(policy: Any, directory: Path) -> None:
    """Writes the policy folder whole or not at all (atomic_write_folder)."""
    atomic_write_folder(directory, policy.save_pretrained)


class CorruptFileError(ValueError):
    """A file of a run or experiment folder that cannot be read as what it should be; the message names the file
    and what to do (usually: delete it, the command that made it makes it again)."""


def read_json_file(path: Path, hint: str = "delete it and rerun the command that made it") -> Any:
    """A JSON file's value, or a CorruptFileError naming the file, the line and `hint`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path}:{err.lineno}: malformed JSON ({err.msg}); {hint}") from None
    except UnicodeDecodeError:
        raise CorruptFileError(f"{path}: not a UTF-8 text file; {hint}") from None


def cached_json_result(path: Path, settings: Any, compute: Callable[[], Any]) -> Any:
    """The `results` saved in `path` when they were made with equal `settings`, else `compute()` saved there
    (a damaged file is refused, naming it, rather than silently remade)."""
    path = Path(path)
    if path.is_file():
        saved = read_json_file(path)
        if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict) or "results" not in saved:
            raise CorruptFileError(
                f"{path}: expected an object with 'settings' and 'results'; delete it and rerun "
                "the command to make it again"
            )
        if saved.get("settings") == settings:
            return saved["results"]
    results = compute()
    atomic_write_json(path, {"settings": settings, "results": results})
    return results


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(_finite(json.loads(json.dumps(value, default=_json_default))), indent=indent)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, to_json(value) + "\n")


def update_json(path: Path, key: str, value: Any) -> None:
    """``value`` under ``key`` of the JSON object at ``path`` (made when missing), written atomically: the benches
    keep one results file with an entry per setting and device, each run replacing its own."""
    path = Path(path)
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing[key] = value
    atomic_write_json(path, existing)


def save_tensors_atomic(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """A safetensors file written under a temporary name and renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, default_file_mode())  # after: save_file makes the file anew
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise CorruptFileError(f"{path}: not a readable safetensors file ({err})") from None


def _gzipped(path: Path) -> Path:
    return path.with_name(path.name + ".gz")


def jsonl_exists(path: Path) -> bool:
    """Whether the JSON-lines file `path` is there, plain or gzipped (NAME.gz: a committed experiment keeps its large
    logs gzipped, scripts/device/keep_state.sh)."""
    return Path(path).is_file() or _gzipped(Path(path)).is_file()


def open_jsonl(path: Path) -> IO[str]:
    """The JSON-lines file `path` for reading, or its gzipped copy NAME.gz where only that is there."""
    path = Path(path)
    if not path.is_file() and _gzipped(path).is_file():
        return gzip.open(_gzipped(path), "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Reads a JSON-lines file (or its gzipped NAME.gz); a broken line is an error naming the file and line."""
    rows = []
    with open_jsonl(path) as f:
        text = f.read()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows


class RunLockedError(RuntimeError):
    """Another live process is writing the run folder (two writers would interleave their logs and states)."""


LOCK = ".lock"
_HELD_LOCKS: dict[str, int] = {}  # resolved run folder -> the open, flock-ed lock file of this process


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def release_run_locks() -> None:
    """Gives back every run this process holds (a command that ended, finished or not, writes no more)."""
    for key in list(_HELD_LOCKS):
        RunFolder(Path(key)).unlock()


class RunFolder:
    """One run's folder. Append-only logs while it runs, an atomic summary when it ends. One writer at a time:
    the first write takes an exclusive lock (`.lock`, holding pid, host and start time) that lasts until the run
    finishes or its process ends, so a second process started on the same run is refused, naming the first."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def lock(self) -> None:
        """Takes the run for this process (again, if it holds it already). The OS frees the lock when a process
        dies, so a run whose writer was killed is taken over, with a message naming the writer that left it."""
        key = str(self.path.resolve())
        if key in _HELD_LOCKS:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "a process that wrote no details"
            os.close(fd)
            raise RunLockedError(
                f"{self.path}: another process is writing this run ({holder}); wait for it to end, "
                "stop it, or give this run another name"
            ) from None
        left = os.pread(fd, 512, 0).decode(errors="replace").strip()
        if left:
            print(f"{self.path}: taking over from {left}, which ended without finishing the run")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}".encode(), 0)
        _HELD_LOCKS[key] = fd

    def unlock(self) -> None:
        """Gives the run back (its lock file emptied: nobody left it in the middle of a write)."""
        fd = _HELD_LOCKS.pop(str(self.path.resolve()), None)
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    def is_finished(self) -> bool:
        if not self.summary_path.is_file():
            return False
        try:
            json.loads(self.summary_path.read_text())
        except (json.JSONDecodeError, OSError):
            return False
        return True

    def holds_work(self) -> bool:
        """Whether a rerun would keep anything of this folder: a summary, a checkpoint, a saved model or snapshots
        (its subfolders other than wandb's)."""
        if not self.path.is_dir():
            return False
        return self.summary_path.is_file() or any(
            p.is_dir() and p.name != "wandb" and not p.name.startswith(".") and any(p.iterdir())
            for p in self.path.iterdir()
        )

    def check_settings(self, config: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> None:
        """Refuses to resume, or to call finished, a run that its folder says was made with other settings: a
        run's identity is all of its resolved config, less the keys (dotted names, or prefixes ending in '.') in
        `ignore` that do not change what it computes (progress bars, worker counts, other stages' sections)."""
        path = self.path / "config.yaml"
        if not path.is_file() or not self.holds_work():
            return  # a try that failed before saving anything: its logs go when the run starts afresh
        try:
            saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            raise CorruptFileError(
                f"{path}: not readable YAML; delete the run folder {self.path} to start the run again"
            ) from None
        wanted = yaml.safe_load(yaml.safe_dump(_finite(dict(config)), sort_keys=False))
        old, new = _flat(saved if isinstance(saved, dict) else {}), _flat(wanted)

        def identity(key: str) -> bool:
            return not any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignore)

        # keys on one side only are config fields added or removed by an upgrade of vla-razor, not a user's change
        changed = [k for k in sorted(set(old) & set(new)) if identity(k) and old[k] != new[k]]
        if changed:
            shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            raise ConfigError(
                f"{self.path} was made with other settings ({shown}{more}); give these settings "
                "another run name, or delete that folder to start the run again"
            )

    def start(self, config: Mapping[str, Any], fresh: bool = True) -> None:
        """Creates the folder and writes the resolved config; ``fresh`` drops logs of an unfinished try. A folder
        that exists with content but no config.yaml is not a run and is never written into."""
        if (
            self.path.is_dir()
            and not (self.path / "config.yaml").is_file()
            and any(not p.name.startswith(".") for p in self.path.iterdir())
        ):
            raise ConfigError(
                f"{self.path}: exists and is not a run folder (it has no config.yaml); choose another "
                "run name or output folder"
            )
        self.lock()
        if fresh and self.path.exists():
            for name in ("metrics.jsonl", "points.jsonl", SUMMARY):
                (self.path / name).unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(_finite(dict(config)), sort_keys=False))

    def log(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            for name, value in metrics.items():
                f.write(to_json({"step": step, "split": split, "name": name, "value": value}, indent=None) + "\n")

    def drop_metrics_after(self, step: int) -> None:
        """Forgets logged rows past ``step``: a resumed run redoes those steps and logs them again."""
        self.lock()
        for name in ("metrics.jsonl", "points.jsonl"):
            path = self.path / name
            if path.exists():
                rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
                atomic_write_text(path, "".join(to_json(r, indent=None) + "\n" for r in rows))

    def add_point(self, point: Mapping[str, Any]) -> None:
        with open(self.path / "points.jsonl", "a") as f:
            f.write(to_json(dict(point), indent=None) + "\n")

    def save_checkpoint(
        self, name: str, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
    ) -> Path:
        path = self.path / "checkpoints" / f"{name}.safetensors"
        save_tensors_atomic(path, tensors, metadata)
        return path

    def finish(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.summary_path, dict(summary))
        self.unlock()

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        return read_jsonl(path) if path.exists() else []


class WandbMirror:
    """Mirrors metrics to Weights & Biases: online if the user is logged in, else offline; or off.

    ``mode``: "auto" (offline unless logged in; off if wandb is not installed), "offline", "online", "off".
    Offline runs land in ``<dir>/wandb`` and can be uploaded later with ``wandb sync``.
    """

    def __init__(self, mode: str, project: str, name: str, config: Mapping[str, Any], directory: Path) -> None:
        self.run = None
        if mode == "off":
            return
        try:
            import wandb  # optional (the wandb extra)
        except ImportError:
            if mode == "auto":
                return
            raise RuntimeError("wandb logging was requested but wandb is not installed: pip install 'vla-razor[wandb]'")
        if mode == "auto":
            mode = "online" if _wandb_logged_in() else "offline"
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project, name=name, config=dict(config), dir=str(directory), mode=mode, reinit="create_new"
        )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(dict(metrics), step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
