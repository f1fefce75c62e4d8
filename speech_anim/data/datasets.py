"""The training/evaluation Dataset over preprocessed clips (see `preprocess.py` for the format).

Each item is what the paper's training needs from one clip: a still identity frame (a random frame
of the clip: the generator is conditioned on one still), the aligned video, one 0.2 s audio window
per frame (Eq. 1), the same clip's audio shifted by a random offset for the synchronisation
discriminator's out-of-sync pairs (Fig. 6), the raw audio, the landmarks and the length.
`collate_clips` pads clips of different lengths and adds a mask.
"""

from __future__ import annotations

import json
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import frame_audio, warped_windows
from ..blinks import eye_openness
from .preprocess import clip_path, decode_frames, scan_clips
from .readers import DatasetError, paper_split

# Out-of-sync audio is shifted by at least this many frames (0.2 s at 25 fps: one audio window
# further, so no window overlaps its in-sync counterpart) and at most `max_shift` frames.
MIN_SHIFT = 5
MAX_SHIFT = 25
# The still is drawn among frames whose eyes are at least this open (blinks.eye_openness): a photo to
# animate has open eyes, and a still caught mid-blink would ask the generator to open them.
OPEN_STILL = 0.9
# rest_still: the still is one of a clip's first REST_FRAMES frames (0.24 s). GRID clips open with
# silence (the alignments' leading "sil": 10 frames or more in 19 of 20 clips of s1, s26 and s31), so
# the mouth there is at rest, as in a photo to animate and as MouthMotion's displacements assume.
REST_FRAMES = 6
# openness="frames": the clips' eye openness read off their crops, cached beside them (frame_openness).
OPENNESS_CACHE = "eye_openness_frames.npz"
PHONES_CACHE = "phone_tracks.npz"
OPENNESS_SOURCES = ("landmarks", "frames")
SPLIT_NAMES = ("train", "val", "test", "unseen")
PAPER_SPLIT_NAMES = ("paper-train", "paper-val", "paper-test")

# iBUG 68 point i of a mirrored face is point MIRROR_LANDMARKS[i] of the original: the face's
# right side becomes its left (jaw, brows, eyes, nose wings, mouth corners swap; the midline stays).
MIRROR_LANDMARKS = np.array(
    list(range(16, -1, -1))  # jaw 0..16
    + list(range(26, 16, -1))  # brows 17..21 <-> 26..22
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose base
    + [45, 44, 43, 42, 47, 46]  # right eye 36..41 <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye 42..47 <- right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip 48..59
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip 60..67
)


def _crop_openness(path: Path) -> np.ndarray:
    from ..face import crop_landmarks  # dlib, loaded only where it is needed

    with np.load(path) as clip:
        return eye_openness(crop_landmarks(decode_frames(clip["frames"], clip["frame_offsets"])))


def frame_openness(root, ids, workers: int = 1) -> dict[str, np.ndarray]:
    """Eye openness (`blinks.eye_openness`) of each clip, read off its aligned crops by `face.crop_landmarks`.

    The evaluation measures blinks so, on real and generated video alike (`blinks.video_blinks`).
    The landmarks preprocessing stored were tracked and smoothed on the full frames to place the
    crop; read off them, the same blinks look different (s1 validation: 0.89 blinks/s, median 0.32 s;
    off the crops 0.78/s, 0.40 s), so a model of the eyes fitted to them draws blinks the evaluation
    finds shorter than the real ones. dlib takes about 0.5 s a clip: the curves are cached in
    `root/eye_openness_frames.npz` and only missing clips are computed (on `workers` processes)."""
    return _cached_per_clip(Path(root), OPENNESS_CACHE, ids, _crop_openness, workers)


def _clip_phones(path: Path) -> np.ndarray:
    from ..phones import phone_track

    with np.load(path) as clip:
        return phone_track(clip["audio"].astype(np.float32) / 32768.0)


def clip_phone_tracks(root, ids, workers: int = 1) -> dict[str, np.ndarray]:
    """The phone track (`phones.phone_track`) of each clip's audio, for fitting a mouth motion that reads
    phones (train/fit_mouth_motion.py --phones). About 0.15 s a clip; cached in `root/phone_tracks.npz`."""
    return _cached_per_clip(Path(root), PHONES_CACHE, ids, _clip_phones, workers)


def _cached_per_clip(root: Path, cache_name: str, ids, compute, workers: int) -> dict[str, np.ndarray]:
    """compute(clip path) of each clip id, kept in `root/cache_name`; only missing clips are computed."""
    cache = root / cache_name
    stored: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as saved:
            stored = {key.replace("__", "/"): saved[key] for key in saved.files}
    missing = [i for i in dict.fromkeys(ids) if i not in stored]
    if missing:
        paths = [clip_path(root, i) for i in missing]
        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                results = pool.map(compute, paths, chunksize=8)
        else:
            results = [compute(p) for p in paths]
        stored.update(zip(missing, results))
        np.savez(cache, **{key.replace("/", "__"): value for key, value in stored.items()})
    return {i: stored[i] for i in ids}


# The augmentations' strengths: the largest each may take, and what it is (0 is off for all of them).
AUGMENTATION_LIMITS = {
    "colour_jitter": (0.5, "a colour transform's strength"),
    "voice_warp": (1.0, "a playback rate's spread"),
    "geometry_jitter": (0.2, "a scale and shift's strength"),
    "mouth_jitter": (8.0, "a shift in crop pixels"),
}


def augmentation_problem(**strengths: float) -> str | None:
    """What is wrong with these augmentation strengths (TalkingFaceDataset's and TrainConfig's
    keywords), in one line, or None."""
    for name, value in strengths.items():
        limit, what = AUGMENTATION_LIMITS[name]
        if not 0 <= value <= limit:
            return f"{name} is {what}, between 0 (off) and {limit:g}, got {value}"
    return None


class TalkingFaceDataset(torch.utils.data.Dataset):
    """Clips of a preprocessed dataset at `root` (the `--out` of `speech-anim preprocess`).

    split: None / "all" (every clip), "train" / "val" / "test" / "unseen" (the list files shipped
        in speech_anim/data/splits/, `<dataset>_<split>.txt`), "paper-train" / "paper-val" /
        "paper-test" (the paper's speaker-wise split, `readers.paper_split`), a path to a list
        file (one clip id per line) or a list of clip ids.
    frames: None for whole clips, or N for a random N-frame window of each clip (clips shorter
        than N are left out).
    mirror: flip each sample horizontally with probability 1/2 (video, still and landmarks).
    colour_jitter: s > 0 passes the still and the video through one random colour transform per
        item (`jitter_colours`), so that a generator has to take skin, lips and lids from the still
        it is given rather than from the few faces it was trained on.
    geometry_jitter: g > 0 moves each item's still, video and landmarks by one random affine map:
        each axis scaled by up to exp(+-g) and shifted by up to g half-widths (`jitter_geometry`), so
        that the mouth and eyes are not always where one training face has them.
    mouth_jitter: p > 0 moves each item's lower face (still, video, landmarks) up or down by up to p
        crop pixels relative to its eyes (`shift_mouth`): the mouth's place below the eyes differs
        between faces, which scaling the whole face does not teach.
    voice_warp: v > 0 plays each item's audio windows (in sync and shifted) at one random rate
        between 1 / (1 + v) and 1 + v about their middles (`audio.warped_windows`): pitch and
        formants move as between voices, the timing stays. raw_audio stays as recorded.
    rest_still: take the still from the clip's first REST_FRAMES frames (mouth at rest) instead of any
        frame with open eyes; for a mouth_motion generator, which moves the still's mouth from rest.
    min_shift, max_shift: range of the out-of-sync audio's offset in frames (either sign).
    seed: None draws from torch's seed (different every epoch and DataLoader worker, reproducible
        under torch.manual_seed); an int makes item i of epoch e (`set_epoch`) always the same
        (persistent DataLoader workers hold their own copy: they do not see `set_epoch`).

    Items are dicts: still (3, 128, 96) and video (T, 3, 128, 96) float32 in [-1, 1]; audio and
    audio_shifted (T, 3200) float32; shift (frames); raw_audio (T * 16000 / fps,) float32;
    landmarks (T, 68, 2) float32 crop pixels; still_landmarks (68, 2), the still's (for a mouth_motion
    generator); openness (T,) float32 (`blinks.eye_openness` of the
    whole clip, 1 = its open eyes; of the tracked landmarks, or with openness="frames" read off the
    crops, `frame_openness`); length, start (first frame in the clip), fps,
    mirrored, id, speaker.

    An index i >= len(dataset) is another draw of clip i % len(dataset) (its own window, still and
    shift), for samplers that draw a clip more than once an epoch (train.py's speaker balance).
    """

    def __init__(self, root, split=None, frames: int | None = None, mirror: bool = False,
                 min_shift: int = MIN_SHIFT, max_shift: int = MAX_SHIFT, seed: int | None = None,
                 colour_jitter: float = 0.0, voice_warp: float = 0.0, geometry_jitter: float = 0.0,
                 mouth_jitter: float = 0.0, rest_still: bool = False, openness: str = "landmarks"):  # fmt: skip
        self.root = Path(root)
        if openness not in OPENNESS_SOURCES:
            raise DatasetError(f"openness must be one of {OPENNESS_SOURCES} (where the eyes' openness is read), got {openness!r}")
        problem = augmentation_problem(colour_jitter=colour_jitter, voice_warp=voice_warp,
                                       geometry_jitter=geometry_jitter, mouth_jitter=mouth_jitter)  # fmt: skip
        if problem:
            raise DatasetError(problem)
        self.colour_jitter, self.voice_warp, self.geometry_jitter = colour_jitter, voice_warp, geometry_jitter
        self.rest_still = rest_still
        self.mouth_jitter = mouth_jitter
        if frames is not None and frames < 1:
            raise DatasetError(f"frames must be at least 1 (or None for whole clips), got {frames}")
        if not 1 <= min_shift <= max_shift:
            raise DatasetError(f"need 1 <= min_shift <= max_shift, got {min_shift} and {max_shift}")
        self.frames, self.mirror, self.seed = frames, mirror, seed
        self.min_shift, self.max_shift = min_shift, max_shift
        self.epoch = 0
        self._draws = 0

        self.dataset, clips = _load_index(self.root)
        wanted = _split_ids(split, self.dataset, clips)
        by_id = {c["id"]: c for c in clips}
        if wanted is not None:
            missing = [i for i in wanted if i not in by_id]
            if missing:
                warnings.warn(
                    f"{len(missing)} of the {len(wanted)} clips of split {split!r} are not in {self.root} "
                    f"(skipped or not preprocessed), e.g. {missing[0]}", stacklevel=2,
                )  # fmt: skip
            clips = [by_id[i] for i in wanted if i in by_id]
        if frames is not None:
            clips = [c for c in clips if c["frames"] >= frames]
        if not clips:
            raise DatasetError(
                f"no clips for split {split!r}" + (f" with at least {frames} frames" if frames else "")
                + f" in {self.root}: check the split and that preprocessing finished"
            )  # fmt: skip
        self.clips = clips
        # openness "frames": every clip's curve, computed once (and cached) before the first item
        self.crop_openness = (frame_openness(self.root, [c["id"] for c in clips], workers=2)
                              if openness == "frames" else None)

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """With an int `seed`: draw epoch `epoch`'s random choices."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([self.seed, self.epoch, index])
        # torch's seed differs per DataLoader worker and per epoch; the counter separates items of
        # one process that share it (num_workers=0, or one index drawn twice).
        self._draws += 1
        return np.random.default_rng([torch.initial_seed() % 2**63, index, self._draws])

    def __getitem__(self, index: int) -> dict:
        entry = self.clips[index % len(self.clips)]
        rng = self._rng(index)
        path = clip_path(self.root, entry["id"])
        try:
            with np.load(path, allow_pickle=False) as clip:
                data, offsets = clip["frames"], clip["frame_offsets"]
                audio = clip["audio"].astype(np.float32) / 32768.0
                landmarks_all = clip["landmarks"]
        except FileNotFoundError:
            raise DatasetError(f"{path} is missing: rerun `speech-anim preprocess` on {self.root}") from None

        total = len(offsets) - 1
        length = total if self.frames is None else self.frames
        start = int(rng.integers(0, total - length + 1))
        openness_all = eye_openness(landmarks_all) if self.crop_openness is None else self.crop_openness[entry["id"]]
        if self.rest_still:
            first = openness_all[:REST_FRAMES]
            open_frames = np.flatnonzero(first >= OPEN_STILL)
            still_index = int(rng.choice(open_frames)) if len(open_frames) else int(first.argmax())
        else:
            open_frames = np.flatnonzero(openness_all >= OPEN_STILL)
            still_index = int(rng.choice(open_frames)) if len(open_frames) else int(rng.integers(0, total))
        frames = decode_frames(data, offsets, [*range(start, start + length), still_index])
        video, still = frames[:length], frames[length]
        # The still's landmarks ride along as one more frame, so mirroring and jitter move them with it.
        landmarks = landmarks_all[[*range(start, start + length), still_index]].astype(np.float32)

        fps = float(entry["fps"])
        shift = self._draw_shift(rng, start, length, total)
        hop = 16000 / fps
        first, count = int(round(start * hop)), int(round(length * hop))
        raw = np.zeros(count, np.float32)
        piece = audio[first : first + count]
        raw[: len(piece)] = piece

        mirrored = bool(self.mirror and rng.random() < 0.5)
        if mirrored:
            video, still = video[:, :, ::-1], still[:, ::-1]
            landmarks = landmarks[:, MIRROR_LANDMARKS]
            landmarks[..., 0] = video.shape[2] - 1 - landmarks[..., 0]
        still, video = _to_tensor(still[None])[0], _to_tensor(video)
        if self.colour_jitter:
            still, video = jitter_colours(rng, self.colour_jitter, still, video)
        if self.voice_warp:
            rate = float(np.exp(rng.uniform(-np.log1p(self.voice_warp), np.log1p(self.voice_warp))))
            windows = warped_windows(audio, np.arange(start, start + length), rate, fps)
            shifted = warped_windows(audio, np.arange(start + shift, start + shift + length), rate, fps)
        else:
            windows = frame_audio(audio, fps, frames=total)[start : start + length]
            shifted = _shifted_windows(audio, fps, total, start, length, shift)
        landmarks = torch.from_numpy(np.ascontiguousarray(landmarks))
        if self.geometry_jitter:
            still, video, landmarks = jitter_geometry(rng, self.geometry_jitter, still, video, landmarks)
        if self.mouth_jitter:
            still, video, landmarks = shift_mouth(rng, self.mouth_jitter, still, video, landmarks)
        landmarks, still_landmarks = landmarks[:length], landmarks[length]

        return {
            "still": still,
            "video": video,
            "audio": torch.from_numpy(np.ascontiguousarray(windows)),
            "audio_shifted": torch.from_numpy(shifted),
            "shift": shift,
            "raw_audio": torch.from_numpy(raw),
            "landmarks": landmarks,
            "still_landmarks": still_landmarks,
            "openness": torch.from_numpy(np.ascontiguousarray(openness_all[start : start + length])),
            "length": length,
            "start": start,
            "fps": fps,
            "mirrored": mirrored,
            "id": entry["id"],
            "speaker": entry["speaker"],
        }

    def _draw_shift(self, rng, start: int, length: int, total: int) -> int:
        """An offset with min_shift <= |shift| <= max_shift, inside the clip when one exists."""
        magnitudes = np.arange(self.min_shift, self.max_shift + 1)
        offsets = np.concatenate([-magnitudes[::-1], magnitudes])
        inside = offsets[(start + offsets >= 0) & (start + offsets + length <= total)]
        return int(rng.choice(inside if len(inside) else offsets))


def _shifted_windows(audio, fps: float, total: int, start: int, length: int, shift: int) -> np.ndarray:
    """Windows of frames start+shift ... start+shift+length-1; zeros beyond the clip's audio."""
    first = start + shift
    pad_frames = max(0, -first, first + length - total)
    pad = int(round(pad_frames * 16000 / fps))
    # Padding by whole frames keeps the windows on the clip's frame grid (to half a sample).
    padded = np.pad(audio, (pad, pad))
    windows = frame_audio(padded, fps, frames=total + 2 * pad_frames)
    return np.ascontiguousarray(windows[first + pad_frames : first + pad_frames + length])


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """N×H×W×3 uint8 -> N×3×H×W float32 in [-1, 1]."""
    # In numpy on a contiguous copy: torch's elementwise ops on the permuted (strided) view were
    # several times slower (benchmarks/dataloader.py).
    pixels = np.ascontiguousarray(frames.transpose(0, 3, 1, 2)).astype(np.float32)
    pixels *= 1 / 127.5
    pixels -= 1.0
    return torch.from_numpy(pixels)


def jitter_colours(rng: np.random.Generator, strength: float, *images: torch.Tensor) -> list[torch.Tensor]:
    """`images` (..., 3, H, W in [-1, 1]) through one random affine colour map, x -> A x + b, clipped.

    A is the identity with each entry moved by up to `strength` (channel gains, and some of one
    channel mixed into another: hue and saturation shifts), b moves each channel by up to
    `strength` (brightness and tint). The same map for a still and its video keeps them one face,
    so the generator cannot learn the training faces' colours; it has to read them off the still.
    """
    mix = np.eye(3) + rng.uniform(-strength, strength, (3, 3))
    shift = rng.uniform(-strength, strength, 3)
    matrix = torch.from_numpy(mix.astype(np.float32))
    offset = torch.from_numpy(shift.astype(np.float32))[:, None, None]
    return [(torch.einsum("ij,...jhw->...ihw", matrix, image) + offset).clamp_(-1, 1) for image in images]


def jitter_geometry(rng: np.random.Generator, strength: float, still: torch.Tensor, video: torch.Tensor,
                    landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The still (3, H, W), video (T, 3, H, W) and landmarks (T, 68, 2, pixels) through one random
    affine map about the crop's centre: x scaled by exp(u), y by exp(v), u, v ~ U(-s, s) (size and
    aspect), then shifted by up to s half-widths and half-heights. Edges repeat the border pixels.
    """
    scale = np.exp(rng.uniform(-strength, strength, 2))
    shift = rng.uniform(-strength, strength, 2)  # in half-sizes: grid_sample's normalised units
    height, width = video.shape[-2:]
    # grid_sample reads output position n (normalised, align_corners=False) from input (n - shift) / scale.
    theta = torch.tensor([[1 / scale[0], 0, -shift[0] / scale[0]], [0, 1 / scale[1], -shift[1] / scale[1]]],
                         dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, *video.shape[1:]], align_corners=False)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2])
    half = torch.tensor([width / 2, height / 2])
    points = (landmarks - centre) * torch.from_numpy(scale).float() + centre + torch.from_numpy(shift).float() * half
    return (*_resample(still, video, grid), points)


def _resample(still: torch.Tensor, video: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The still (3, H, W) and every frame of the video (T, 3, H, W) read at one 1×H×W×2 grid
    (grid_sample's normalised coordinates, align_corners=False), bilinear, the border repeated."""
    frames = torch.cat([still[None], video])
    moved = F.grid_sample(frames, grid.expand(len(frames), *grid.shape[1:]), mode="bilinear",
                          padding_mode="border", align_corners=False)
    return moved[0], moved[1:]


# mouth_jitter: rows of the canonical 128×96 crop between which the shift of the mouth ramps in:
# under the eyes (rows 46-51) to above the mouth (84-94); the nose between them stretches or shrinks.
MOUTH_SHIFT_ROWS = (56.0, 80.0)


def shift_mouth(rng: np.random.Generator, pixels: float, still: torch.Tensor, video: torch.Tensor,
                landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The still (3, H, W), video (T, 3, H, W) and landmarks (T, 68, 2) with the lower face moved
    down by d ~ U(-p, p) pixels (up if d < 0) relative to the eyes, which stay: a row y of the result
    shows row y - d r(y) of the input, r ramping from 0 at MOUTH_SHIFT_ROWS[0] to 1 at [1] and below.
    Faces differ in how far the mouth sits below the eyes; jitter_geometry scales the whole face and
    keeps that proportion, so a decoder could still place every mouth where s1 has his."""
    shift = float(rng.uniform(-pixels, pixels))
    top, bottom = MOUTH_SHIFT_ROWS
    span = bottom - top
    height, width = video.shape[-2:]
    rows = torch.arange(height, dtype=torch.float32)
    source_rows = rows - shift * ((rows - top) / span).clamp(0, 1)
    # grid_sample's normalised coordinates (align_corners=False) of pixel centres 0 ... n-1
    y = (2 * source_rows + 1) / height - 1
    x = (2 * torch.arange(width, dtype=torch.float32) + 1) / width - 1
    grid = torch.stack(torch.broadcast_tensors(x[None, :], y[:, None]), dim=-1)[None]
    # A landmark at input row v lands where y - d r(y) = v.
    v = landmarks[..., 1]
    ramped = (v - shift * top / span) / (1 - shift / span)
    new_rows = torch.where(v <= top, v, torch.where(v >= bottom - shift, v + shift, ramped))
    points = torch.stack([landmarks[..., 0], new_rows], dim=-1)
    return (*_resample(still, video, grid), points)


def collate_clips(items: list[dict]) -> dict:
    """Batch items of different lengths: time axes zero padded to the longest, plus
    `mask` (B, T) bool (True on real frames) and `lengths` (B,) long."""
    lengths = torch.tensor([item["length"] for item in items], dtype=torch.long)
    longest = int(lengths.max())
    batch = {
        "still": torch.stack([item["still"] for item in items]),
        "still_landmarks": torch.stack([item["still_landmarks"] for item in items]),
        "lengths": lengths,
        "mask": torch.arange(longest)[None, :] < lengths[:, None],
    }
    for key in ("video", "audio", "audio_shifted", "landmarks", "openness", "raw_audio"):
        tensors = [item[key] for item in items]
        size = longest if key != "raw_audio" else max(len(t) for t in tensors)
        fill = tensors[0].new_ones if key == "openness" else tensors[0].new_zeros  # padding: open eyes
        out = fill((len(tensors), size, *tensors[0].shape[1:]))
        for i, tensor in enumerate(tensors):
            out[i, : len(tensor)] = tensor
        batch[key] = out
    for key in ("shift", "start", "length"):
        batch[key] = torch.tensor([item[key] for item in items], dtype=torch.long)
    batch["fps"] = torch.tensor([item["fps"] for item in items], dtype=torch.float32)
    batch["mirrored"] = torch.tensor([item["mirrored"] for item in items])
    batch["id"] = [item["id"] for item in items]
    batch["speaker"] = [item["speaker"] for item in items]
    return batch


def _load_index(root: Path) -> tuple[str | None, list[dict]]:
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found: run `speech-anim preprocess --out {root}` first")
    index_file = root / "index.json"
    if index_file.is_file():
        index = json.loads(index_file.read_text())
        return index.get("dataset"), index["clips"]
    # A run still going (or killed) has written no index yet: read the finished clips directly.
    marker = root / "dataset.json"
    dataset = json.loads(marker.read_text()).get("dataset") if marker.is_file() else None
    clips = scan_clips(root)
    if not clips:
        raise DatasetError(f"{root} holds no preprocessed clips: run `speech-anim preprocess --out {root}` first")
    return dataset, clips


def split_file(dataset: str, split: str) -> Path:
    """The shipped list file of a named split, e.g. ('grid', 'train') -> .../splits/grid_train.txt."""
    return Path(str(resources.files("speech_anim.data") / "splits" / f"{dataset}_{split}.txt"))


def read_split(path) -> list[str]:
    """Clip ids of a list file: one per line; blank lines and '#' comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split list {path} not found: pass an existing file or one of {', '.join(SPLIT_NAMES)}")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _split_ids(split, dataset: str | None, clips: list[dict]) -> list[str] | None:
    if split is None or split == "all":
        return None
    if isinstance(split, (list, tuple)):
        return [str(i) for i in split]
    if split in SPLIT_NAMES:
        path = split_file(dataset or "", split)
        if not path.is_file():
            paper = "paper-test" if split == "unseen" else f"paper-{split}"
            raise DatasetError(f"no '{split}' list for dataset '{dataset}' ({path.name}): use {paper}, a list file, or None")
        return read_split(path)
    if split in PAPER_SPLIT_NAMES:
        name = split.split("-", 1)[1]
        return [c["id"] for c in clips if paper_split(dataset or "", c["speaker"], c.get("attributes")) == name]
    if isinstance(split, (str, Path)) and Path(split).suffix == ".txt":
        return read_split(split)
    names = ", ".join((*SPLIT_NAMES, *PAPER_SPLIT_NAMES))
    raise DatasetError(f"unknown split {split!r}: use one of {names}, a .txt list file, a list of ids or None")
