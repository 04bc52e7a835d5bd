"""RLDS datasets (TFDS builder folders, as Open X-Embodiment ships them) read without TensorFlow.

A builder folder holds dataset_info.json (name, splits, shard lengths), features.json (the feature tree) and
tfrecord shards `{name}-{split}.tfrecord-{i:05d}-of-{n:05d}`; each record is one episode, a serialized
tf.train.Example whose keys flatten the tree (`steps/action`, `steps/observation/image`, ...), per-step values
concatenated. Why no TensorFlow: the main venv cannot hold it (TF 2.15 needs numpy < 2), and the two things TF
would do here are small and fixed: tfrecord framing (length, masked crc32c of the length, data, masked crc32c of
the data) and the Example protobuf (three list types in a map). Episodes are streamed one record at a time, never
the whole shard. Data CRCs are checked when the `crc32c` or `google_crc32c` package is importable; length CRCs
and truncation always.

Actions as OpenVLA's data pipeline sees them (its `oxe/transforms.py`, re-implemented in numpy):
    fractal20220817_data  action = world_vector (3) + rotation_delta (3) + the relative gripper_closedness_action
                          made absolute (1 open, 0 closed); instruction observation/natural_language_instruction;
                          image observation/image.
    bridge_orig           first step dropped (its action is all zeros); gripper binarized (1 open, 0 closed,
                          in-between values take the next settled one); the arm's action relabelled as the change
                          of the reached state[:6] from one step to the next (last step dropped); instruction
                          language_instruction; image observation/image_0.
    (any other name)      action must already be 7-D (`steps/action`); instruction language_instruction or
                          observation/natural_language_instruction; the first image feature.
The gripper stays un-normalized (mask false), as in OpenVLA.
Imported where used: crc32c (optional), PIL (optional, to decode images) and vla_razor.runs (torch, to write).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from data_collection.dataset import ACTION_DIM, DatasetError, Episode, EpisodeMeta, read_dataset_json, write_dataset

DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
OPENVLA_GRIPPER = "absolute, OpenVLA's: 1 open, 0 closed (RLDS source, OpenVLA's per-dataset transform)"


# ------------------------------------------------------------------------------------------ tfrecord framing
def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def _crc32c_py(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _fast_crc32c() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c

        return lambda data: int.from_bytes(google_crc32c.value(data), "big")
    except ImportError:
        pass
    try:
        import crc32c

        return crc32c.crc32c
    except ImportError:
        return None


def masked_crc(crc: int) -> int:
    """TFRecord's masking of a crc32c: rotate right by 15, add a constant."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: Path) -> Iterator[bytes]:
    """The records of one tfrecord file, one at a time; DatasetError naming the file and offset on corruption."""
    data_crc = _fast_crc32c()
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DatasetError(f"{path}: truncated record header at byte {offset} (corrupt or partial shard)")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(_crc32c_py(header[:8])) != length_crc:
                raise DatasetError(f"{path}: record at byte {offset} has a bad length checksum (corrupt shard)")
            body = f.read(length + 4)
            if len(body) < length + 4:
                raise DatasetError(
                    f"{path}: record at byte {offset} is truncated ({len(body)} of {length + 4} "
                    "bytes; corrupt or partial shard)"
                )
            record, (crc,) = body[:length], struct.unpack("<I", body[length:])
            if data_crc is not None and masked_crc(data_crc(record)) != crc:
                raise DatasetError(f"{path}: record at byte {offset} has a bad data checksum (corrupt shard)")
            offset += 12 + length + 4
            yield record


# ---------------------------------------------------------------------------------------- tf.train.Example
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(buf):
            raise ValueError("varint runs past the end")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message: ints for varint/fixed, bytes for length-delimited."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("length-delimited field runs past the end")
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _feature(buf: bytes) -> list[bytes] | np.ndarray:
    for kind, _, inner in _fields(buf):
        values = [(w, v) for n, w, v in _fields(inner) if n == 1]
        if kind == 1:  # BytesList
            return [bytes(v) for _, v in values]
        if kind == 2:  # FloatList: packed (wire 2) or one fixed32 each (wire 5)
            return np.frombuffer(b"".join(bytes(v) for _, v in values), "<f4").copy()
        if kind == 3:  # Int64List: packed varints (wire 2) or one varint each
            out: list[int] = []
            for w, v in values:
                if w == 0:
                    out.append(v)
                else:
                    i = 0
                    while i < len(v):
                        x, i = _varint(v, i)
                        out.append(x)
            return np.array([x - (1 << 64) if x >= 1 << 63 else x for x in out], np.int64)
    return []


def parse_example(record: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """A serialized tf.train.Example as {key: list of bytes | float32 array | int64 array}."""
    out: dict[str, Any] = {}
    for n, _, features in _fields(record):
        if n != 1:
            continue
        for m, _, entry in _fields(features):
            if m != 1:
                continue
            key, value = "", b""
            for k, _, v in _fields(entry):
                if k == 1:
                    key = bytes(v).decode()
                elif k == 2:
                    value = v
            out[key] = _feature(value)
    return out


# --------------------------------------------------------------------------------------- OpenVLA transforms
def rel2abs_gripper(relative: np.ndarray) -> np.ndarray:
    """Relative gripper commands (+1 close, -1 open, ~0 no change) -> absolute openings (1 open, 0 closed), as
    OpenVLA converts RT-1's: each step holds the last command given; before the first, the opposite of it (open if
    none is ever given)."""
    state = np.where(relative < -0.1, 1, np.where(relative > 0.1, -1, 0))
    given = np.flatnonzero(state)
    current = -state[given[0]] if len(given) else 1
    out = np.empty(len(relative), np.float32)
    for i, s in enumerate(state):
        if s != 0:
            current = s
        out[i] = current
    return out / 2 + 0.5


def binarize_gripper(opening: np.ndarray) -> np.ndarray:
    """Continuous gripper openings -> 0 / 1: above 0.95 open, below 0.05 closed, values in between take the next
    settled value (the last value when none follows), as OpenVLA does for Bridge."""
    out = np.empty(len(opening), np.float32)
    carry = float(opening[-1]) if len(opening) else 0.0
    for i in range(len(opening) - 1, -1, -1):
        if opening[i] > 0.95:
            carry = 1.0
        elif opening[i] < 0.05:
            carry = 0.0
        out[i] = carry
    return out


@dataclass
class Steps:
    """One episode after the transform: T frames, T actions."""

    images: np.ndarray
    actions: np.ndarray
    instruction: str
    proprio: np.ndarray
    rewards: np.ndarray


def _decode_images(where: str, key: str, encoded: list[bytes]) -> np.ndarray:
    from PIL import Image

    try:
        return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.uint8) for b in encoded])
    except Exception as err:  # noqa: BLE001 (PIL raises several types on bad bytes)
        raise DatasetError(f"{where}: feature {key!r} holds bytes that are not an image ({err})") from None


class RLDSBuilder:
    """One TFDS builder folder (e.g. .../fractal20220817_data/0.1.0); episodes streamed from its shards."""

    def __init__(self, root: str | Path, transform: str = "", image_key: str = ""):
        self.root = Path(root)
        missing = f"{self.root} is not a TFDS builder folder"
        self.info = read_dataset_json(self.root / "dataset_info.json", missing)
        self.features = read_dataset_json(self.root / "features.json", missing)
        self.name: str = self.info.get("name") or self.root.parent.name
        self.transform = transform or self.name
        self.step_keys = self._step_feature_keys()
        self.image_key = self._pick_image(image_key)
        self.shards = self._shards()

    def _step_feature_keys(self) -> dict[str, str]:
        """{flattened key: feature type} of the per-step features, from features.json's tree."""
        out: dict[str, str] = {}

        def walk(node: dict[str, Any], prefix: str) -> None:
            if "featuresDict" in node:
                for k, v in node["featuresDict"]["features"].items():
                    walk(v, f"{prefix}/{k}" if prefix else k)
            elif "sequence" in node:
                walk(node["sequence"]["feature"], prefix)
            else:
                out[prefix] = node.get("pythonClassName", "").rsplit(".", 1)[-1]

        walk(self.features, "")
        return {k: v for k, v in out.items() if k.startswith("steps/")}

    def _pick_image(self, image_key: str) -> str:
        images = [k for k, v in self.step_keys.items() if v == "Image"]
        wanted = (
            f"steps/observation/{image_key}"
            if image_key
            else {
                "fractal20220817_data": "steps/observation/image",
                "bridge_orig": "steps/observation/image_0",
            }.get(self.transform, images[0] if images else "")
        )
        if wanted not in images:
            raise DatasetError(
                f"{self.root / 'features.json'}: no image feature {wanted or '(any)'!r} "
                f"(image features: {images or 'none'})"
            )
        return wanted

    def _shards(self) -> list[Path]:
        shards: list[Path] = []
        for split in self.info.get("splits", []):
            n = len(split.get("shardLengths", []))
            template = split.get("filepathTemplate", DEFAULT_TEMPLATE)
            if template == DEFAULT_TEMPLATE:
                shards += [self.root / f"{self.name}-{split['name']}.tfrecord-{i:05d}-of-{n:05d}" for i in range(n)]
            else:  # another naming: the split's files in name order
                shards += sorted(self.root.glob(f"*{split['name']}*.tfrecord*"))
        if not shards:
            shards = sorted(self.root.glob("*.tfrecord*"))
        if not shards:
            raise DatasetError(f"{self.root / 'dataset_info.json'}: lists no shards and the folder has no *.tfrecord*")
        for s in shards:
            if not s.is_file():
                raise DatasetError(f"{s}: listed in {self.root / 'dataset_info.json'} but missing")
        return shards

    def _need(self, ex: dict[str, Any], key: str, where: str) -> Any:
        if key not in ex:
            raise DatasetError(
                f"{where}: episode has no feature {key!r} (transform {self.transform!r}; features: {sorted(ex)})"
            )
        return ex[key]

    def _text(self, ex: dict[str, Any], where: str, *keys: str) -> str:
        for k in keys:
            if k in ex and len(ex[k]):
                return bytes(ex[k][0]).decode()
        raise DatasetError(f"{where}: episode has none of the instruction features {list(keys)}")

    def steps(self, ex: dict[str, Any], where: str) -> Steps:
        """One parsed episode -> (images, 7-D actions, instruction, ...) by OpenVLA's transform of this dataset."""
        images = _decode_images(where, self.image_key, self._need(ex, self.image_key, where))
        t = len(images)

        def per_step(key: str, dim: int) -> np.ndarray:
            v = np.asarray(self._need(ex, key, where), np.float32)
            if v.size != t * dim:
                raise DatasetError(
                    f"{where}: feature {key!r} has {v.size} values for {t} steps, expected {dim} per step ({t * dim})"
                )
            return v.reshape(t, dim)

        rewards = (
            np.asarray(ex["steps/reward"], np.float32).reshape(t)
            if "steps/reward" in ex and np.asarray(ex["steps/reward"]).size == t
            else np.zeros(t, np.float32)
        )
        if self.transform == "fractal20220817_data":
            gripper = rel2abs_gripper(per_step("steps/action/gripper_closedness_action", 1)[:, 0])
            actions = np.concatenate(
                [
                    per_step("steps/action/world_vector", 3),
                    per_step("steps/action/rotation_delta", 3),
                    gripper[:, None],
                ],
                axis=1,
            )
            instruction = self._text(ex, where, "steps/observation/natural_language_instruction")
            proprio = np.zeros((t, 0), np.float32)
        elif self.transform == "bridge_orig":
            raw = per_step("steps/action", ACTION_DIM)
            state = per_step("steps/observation/state", ACTION_DIM)
            instruction = self._text(ex, where, "steps/language_instruction")
            if t < 3:
                raise DatasetError(
                    f"{where}: a Bridge episode of {t} steps has none left after dropping the first "
                    "and last (OpenVLA's transform)"
                )
            raw, state, images, rewards = raw[1:], state[1:], images[1:], rewards[1:]
            gripper = binarize_gripper(raw[:, -1])
            actions = np.concatenate([state[1:, :6] - state[:-1, :6], gripper[:-1, None]], axis=1)
            images, proprio, rewards = images[:-1], state[:-1], rewards[:-1]
        else:
            if "steps/action" not in ex:
                raise DatasetError(f"{where}: episode has no feature 'steps/action' (features: {sorted(ex)})")
            size = np.asarray(ex["steps/action"]).size
            if size != t * ACTION_DIM:
                raise DatasetError(
                    f"{where}: feature 'steps/action' has {size} values for {t} steps, expected "
                    f"{ACTION_DIM} per step (xyz, roll pitch yaw, gripper)"
                )
            actions = per_step("steps/action", ACTION_DIM)
            instruction = self._text(
                ex, where, "steps/language_instruction", "steps/observation/natural_language_instruction"
            )
            proprio = (
                per_step("steps/observation/state", int(np.asarray(ex["steps/observation/state"]).size // t))
                if "steps/observation/state" in ex and t
                else np.zeros((t, 0), np.float32)
            )
        return Steps(
            images=images,
            actions=actions.astype(np.float32),
            instruction=instruction,
            proprio=proprio.astype(np.float32),
            rewards=rewards,
        )

    def episodes(self) -> Iterator[tuple[str, Steps]]:
        """(where, steps) of every episode, shard by shard, one record in memory at a time."""
        for shard in self.shards:
            for i, record in enumerate(read_records(shard)):
                where = f"{shard} (episode {i})"
                try:
                    ex = parse_example(record)
                except ValueError as err:
                    raise DatasetError(f"{where}: not a tf.train.Example ({err}; corrupt shard)") from None
                yield where, self.steps(ex, where)


def rlds_to_ours(src: Path, dst: Path, transform: str = "", image_key: str = "", dataset_name: str = "") -> int:
    """Writes the RLDS builder `src` as our dataset at `dst` (atomically), statistics under `dataset_name`
    (default: the builder's name, OpenVLA's unnorm_key); returns the number of frames."""
    from vla_razor.runs import atomic_write_folder

    builder = RLDSBuilder(src, transform, image_key)
    episodes = (
        Episode(
            images=steps.images,
            proprio=steps.proprio,
            actions=steps.actions,
            rewards=steps.rewards,
            meta=EpisodeMeta(
                task=builder.name,
                instruction=steps.instruction,
                seed=e,
                grid_point=e,
                grid_xy=[],
                attempt=0,
                steps=len(steps.actions),
                success=False,
                reset_kwargs={"rlds_episode": where},
            ),
        )
        for e, (where, steps) in enumerate(builder.episodes())
    )
    env_info = {
        "rlds_name": builder.name,
        "rlds_version": builder.info.get("version", ""),
        "transform": builder.transform,
        "image_key": builder.image_key,
        "gripper": OPENVLA_GRIPPER,
    }
    return atomic_write_folder(
        Path(dst),
        lambda root: write_dataset(
            root, src, episodes, env_info, "rlds", f"converted from RLDS {src}", dataset_name or builder.name
        ),
    )
