"""Corpus layouts -> clip records: where each clip's video, sound and transcript live.

One reader per corpus (GRID, CREMA-D, TCD-TIMIT, LRW) and a generic `folder` reader. A reader
only lists files and parses names and transcripts; it never decodes media, so listing even LRW's
~500k files is quick. Records come sorted by id, so every run, shard and machine sees the same order.
The paper's speaker-wise splits (`paper_split`) live here too: they are knowledge of each corpus.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SpeechAnimError

VIDEO_EXTENSIONS = (".mp4", ".mpg", ".mpeg", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v")
AUDIO_EXTENSIONS = (".wav", ".flac")


class DatasetError(SpeechAnimError, ValueError):
    """A corpus folder, preprocessed dataset or split list is missing or malformed."""


@dataclass
class ClipRecord:
    """One talking-face clip of a corpus.

    `id` is unique within the corpus and doubles as the clip's relative output path
    (`s1/bbaf2n` -> `clips/s1/bbaf2n.npz`). `words` are `(word, start_s, end_s)` with silences left
    out; `audio` is a separate sound track, or None when the video's own track is the speech.
    """

    id: str
    video: Path
    speaker: str
    audio: Path | None = None
    transcript: str | None = None
    words: list[tuple[str, float, float]] | None = None
    attributes: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- GRID
# A GRID sentence is six words: command colour preposition letter digit adverb, and the clip id
# spells it with one character each (`bbaf2n` = "bin blue at f two now").
_GRID_WORDS = (
    {"b": "bin", "l": "lay", "p": "place", "s": "set"},
    {"b": "blue", "g": "green", "r": "red", "w": "white"},
    {"a": "at", "b": "by", "i": "in", "w": "with"},
    None,  # the letter is itself (GRID uses a-z without w)
    {"z": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
     "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine"},
    {"a": "again", "n": "now", "p": "please", "s": "soon"},
)  # fmt: skip
_GRID_ALIGN_UNITS_PER_SECOND = 25000.0  # .align times count 1/25000 s (= 1/1000 of a 25 fps frame)
_SILENCES = {"sil", "sp"}


def grid_sentence(clip_id: str) -> str | None:
    """The sentence a GRID clip id spells, or None if the id is not a GRID code."""
    code = clip_id.rsplit("/", 1)[-1].lower()
    if len(code) != 6:
        return None
    words = []
    for char, table in zip(code, _GRID_WORDS):
        if table is None:
            if not ("a" <= char <= "z"):
                return None
            words.append(char)
        elif char in table:
            words.append(table[char])
        else:
            return None
    return " ".join(words)


def read_grid_align(path: Path) -> list[tuple[str, float, float]]:
    """Words of a GRID `.align` file as `(word, start_s, end_s)`, silences dropped."""
    words = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise DatasetError(f"{path}:{number}: expected 'start end word', got {line!r}; fix or delete the file")
        start, end, word = parts
        try:
            start_s, end_s = int(start) / _GRID_ALIGN_UNITS_PER_SECOND, int(end) / _GRID_ALIGN_UNITS_PER_SECOND
        except ValueError:
            raise DatasetError(f"{path}:{number}: times must be whole numbers, got {line!r}; fix or delete the file") from None
        if word not in _SILENCES:
            words.append((word, start_s, end_s))
    return words


def grid_clips(root: Path) -> list[ClipRecord]:
    """GRID in either of its layouts, speakers `sN` directly under `root`:

    - the corpus' own: `sN/*.mpg` with alignments in `alignments/sN/*.align` (or `align/sN/`);
    - the re-encoded one in ../shared: `sN/video/*.mp4` with `sN/align/*.align`.

    Clips without an alignment file (e.g. s4 here) get the sentence their id spells, no timings.
    """
    records = []
    speakers = sorted(
        (d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"s\d+", d.name)), key=lambda d: int(d.name[1:])
    )
    for speaker_dir in speakers:
        speaker = speaker_dir.name
        video_dir = speaker_dir / "video" if (speaker_dir / "video").is_dir() else speaker_dir
        align_dirs = [speaker_dir / "align", root / "alignments" / speaker, root / "align" / speaker]
        for video in _files(video_dir, VIDEO_EXTENSIONS):
            align = next((d / f"{video.stem}.align" for d in align_dirs if (d / f"{video.stem}.align").is_file()), None)
            words = read_grid_align(align) if align else None
            transcript = " ".join(w for w, _, _ in words) if words else grid_sentence(video.stem)
            records.append(
                ClipRecord(f"{speaker}/{video.stem}", video, speaker, transcript=transcript, words=words)
            )
    return records


# ------------------------------------------------------------------------------------------ CREMA-D
# File names are ActorID_Sentence_Emotion_Level, e.g. 1001_DFA_ANG_XX.
CREMA_D_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
CREMA_D_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMA_D_INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}


def crema_d_clips(root: Path) -> list[ClipRecord]:
    """CREMA-D: `VideoFlash/*.flv` with the speech in `AudioWAV/<same name>.wav` when present."""
    video_dir = root / "VideoFlash"
    if not video_dir.is_dir():
        raise DatasetError(f"{root} has no VideoFlash/ folder: pass the CREMA-D root (with VideoFlash/ and AudioWAV/)")
    records = []
    for video in _files(video_dir, VIDEO_EXTENSIONS):
        parts = video.stem.split("_")
        if len(parts) != 4 or parts[2] not in CREMA_D_EMOTIONS or parts[3] not in CREMA_D_INTENSITIES:
            continue  # not a corpus clip (e.g. a stray file): CREMA-D names are exact
        actor, sentence, emotion, level = parts
        wav = root / "AudioWAV" / f"{video.stem}.wav"
        records.append(
            ClipRecord(
                f"{actor}/{video.stem}", video, actor,
                audio=wav if wav.is_file() else None,
                transcript=CREMA_D_SENTENCES.get(sentence),
                attributes={"sentence": sentence, "emotion": CREMA_D_EMOTIONS[emotion],
                            "intensity": CREMA_D_INTENSITIES[level]},
            )
        )  # fmt: skip
    return records


# ---------------------------------------------------------------------------------------- TCD-TIMIT
def tcd_timit_clips(root: Path) -> list[ClipRecord]:
    """TCD-TIMIT volunteers: `volunteers/NN/straightcam/*.mp4` (also below a `Clips/` level).

    The separate sound track is looked up as `<stem>.wav` beside the video, then in
    `volunteers/NN/audio/`; without one the video's own track is used. A `<stem>.txt` beside the
    video is read as the transcript.
    """
    volunteers = root / "volunteers"
    if not volunteers.is_dir():
        raise DatasetError(f"{root} has no volunteers/ folder: pass the TCD-TIMIT root (volunteers/NN/straightcam/)")
    records = []
    for speaker_dir in sorted(d for d in volunteers.iterdir() if d.is_dir()):
        for camera_dir in sorted(speaker_dir.glob("**/straightcam")):
            for video in _files(camera_dir, VIDEO_EXTENSIONS):
                candidates = [video.with_suffix(".wav"), speaker_dir / "audio" / f"{video.stem}.wav"]
                audio = next((c for c in candidates if c.is_file()), None)
                records.append(
                    ClipRecord(
                        f"{speaker_dir.name}/{video.stem}", video, speaker_dir.name,
                        audio=audio, transcript=_read_transcript(video),
                    )
                )  # fmt: skip
    return records


# ---------------------------------------------------------------------------------------------- LRW
LRW_SPLITS = ("train", "val", "test")


def lrw_clips(root: Path) -> list[ClipRecord]:
    """LRW: `WORD/{train,val,test}/WORD_NNNNN.mp4`; the word is the transcript, the folder the split.

    LRW does not identify speakers (clips come from BBC programmes), so `speaker` is the word.
    """
    records = []
    for word_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        for split in LRW_SPLITS:
            for video in _files(word_dir / split, VIDEO_EXTENSIONS):
                records.append(
                    ClipRecord(
                        f"{word_dir.name}/{split}/{video.stem}", video, word_dir.name,
                        transcript=word_dir.name.lower(), attributes={"split": split, "word": word_dir.name},
                    )
                )  # fmt: skip
    return records


# ------------------------------------------------------------------------------------------- folder
def folder_clips(root: Path) -> list[ClipRecord]:
    """Any videos with sound below `root`; an optional `<stem>.txt` beside one is its transcript.

    The first folder level is taken as the speaker (`root/alice/clip.mp4` -> speaker `alice`).
    """
    records = []
    for video in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
        relative = video.relative_to(root).with_suffix("")
        speaker = relative.parts[0] if len(relative.parts) > 1 else ""
        records.append(ClipRecord(relative.as_posix(), video, speaker, transcript=_read_transcript(video)))
    return records


READERS = {
    "grid": grid_clips,
    "crema-d": crema_d_clips,
    "tcd-timit": tcd_timit_clips,
    "lrw": lrw_clips,
    "folder": folder_clips,
}


def read_clips(dataset: str, root) -> list[ClipRecord]:
    """All clips of a corpus at `root`, sorted by id. Raises `DatasetError` when none are found."""
    if dataset not in READERS:
        raise DatasetError(f"unknown dataset '{dataset}': use one of {', '.join(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder: pass the folder the {dataset} corpus was unpacked to")
    records = sorted(READERS[dataset](root), key=lambda r: r.id)
    if not records:
        raise DatasetError(f"no {dataset} clips found under {root}: check --root and --dataset (layouts: see the README)")
    return records


# ------------------------------------------------------------------------------------------- shards
def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' (1 <= K <= N) -> (K, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise DatasetError(f"--shard must be K/N with 1 <= K <= N (e.g. 2/8), got '{text}'")
    return int(match.group(1)), int(match.group(2))


def in_shard(clip_id: str, shard: tuple[int, int]) -> bool:
    """Whether a clip belongs to shard K of N.

    Decided by a hash of the id alone, not by position in the listing: machines that see slightly
    different file listings still split the clips they share the same way.
    """
    k, n = shard
    return zlib.crc32(clip_id.encode("utf-8")) % n == k - 1


# ------------------------------------------------------------------------------------ paper splits
# The paper (Vougioukas et al., IJCV 2019, §5 / Table 1) splits every corpus by speaker: GRID
# 50/20/30, TCD-TIMIT with the corpus' recommended split, CREMA-D 70/15/15 by actor, LRW by its own
# folders. Its exact subject lists could not be verified offline while writing this, so rather than
# guessing them, GRID, TCD-TIMIT and CREMA-D speakers are assigned here by a fixed seeded
# permutation of each corpus' full speaker roster in those proportions (TCD-TIMIT: 70/15/15, which
# is the proportion of its recommended volunteer split only approximately). Replace a roster's
# assignment with the published list when comparing numbers with the paper.
PAPER_SPLIT_FRACTIONS = {"grid": (0.5, 0.2, 0.3), "tcd-timit": (0.7, 0.15, 0.15), "crema-d": (0.7, 0.15, 0.15)}
_SPEAKER_ROSTERS = {
    "grid": [i for i in range(1, 35) if i != 21],  # s1..s34; s21's video was never released
    "tcd-timit": list(range(1, 60)),  # volunteers 01..59 (folder names carry a gender letter: 01M)
    "crema-d": list(range(1001, 1092)),  # actors 1001..1091
}
_PAPER_SPLIT_SEED = 2019


def paper_split(dataset: str, speaker: str, attributes: dict | None = None) -> str:
    """'train', 'val' or 'test' for a clip of `speaker` under the paper-style split.

    LRW's split is its folder, read from the clip's `attributes["split"]` (see `lrw_clips`).
    """
    if dataset == "lrw":
        split = (attributes or {}).get("split")
        if split not in LRW_SPLITS:
            raise DatasetError("an LRW clip's split comes from its folder: pass the clip's attributes with 'split'")
        return split
    if dataset not in PAPER_SPLIT_FRACTIONS:
        raise DatasetError(f"no paper split for dataset '{dataset}': use one of grid, tcd-timit, crema-d, lrw")
    digits = re.search(r"\d+", str(speaker))
    roster = _SPEAKER_ROSTERS[dataset]
    if not digits or int(digits.group()) not in roster:
        raise DatasetError(f"speaker '{speaker}' is not in the {dataset} roster, so it has no paper split")
    order = np.random.default_rng(_PAPER_SPLIT_SEED).permutation(len(roster))
    rank = int(np.flatnonzero(np.asarray(roster)[order] == int(digits.group()))[0])
    train, val, _ = PAPER_SPLIT_FRACTIONS[dataset]
    n_train, n_val = round(train * len(roster)), round(val * len(roster))
    return "train" if rank < n_train else "val" if rank < n_train + n_val else "test"


def _files(folder: Path, extensions) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in extensions and p.is_file())


def _read_transcript(video: Path) -> str | None:
    text = video.with_suffix(".txt")
    if not text.is_file():
        return None
    return " ".join(text.read_text(errors="replace").split()) or None
