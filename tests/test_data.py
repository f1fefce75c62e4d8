"""speech_anim.data: corpus readers, preprocessing into aligned clips, split lists and the Dataset.

Real GRID clips from ../shared are preprocessed once per module (3 of s1, 1 of s4 at 720x576, plus
a corrupt, a silent and a face-lost clip made from them). The other corpora have no real files
here, so their readers run on tiny layouts these tests build by re-muxing a GRID clip under the
names each corpus uses.
"""

import json
import os
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from speech_anim.audio import frame_audio
from speech_anim.data import (
    MIRROR_LANDMARKS, DatasetError, TalkingFaceDataset, collate_clips, paper_split, preprocess_corpus, read_clips, read_split,
    split_file,
)  # fmt: skip
from speech_anim.data.datasets import MOUTH_SHIFT_ROWS, jitter_colours, jitter_geometry, shift_mouth
from speech_anim.data.preprocess import SKIP_REASONS, clip_path, decode_frames, read_meta, skip_path
from speech_anim.data.readers import grid_clips, grid_sentence, in_shard, parse_shard, read_grid_align
from speech_anim.face import STABLE_POINTS, canonical_landmarks, invert_transform, similarity_transform, transform_points

S1_CLIPS = ("bbaf2n", "bbaf3s", "bbaf4p")
S4_CLIP = "bbilzs"
# An s4 clip whose sound track has a 0.1 s timestamp gap: its audio ends 3 frames early.
S4_GAP_CLIP = "bbaf2a"
W = 96


def _ffmpeg(*args) -> None:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(command, check=True)


@pytest.fixture(scope="module")
def grid_layout(grid_root, tmp_path_factory) -> Path:
    """A GRID layout like ../shared's: real clips linked, and three broken ones made from bbaf2n."""
    root = tmp_path_factory.mktemp("grid")
    source = grid_root / "s1" / "video" / "bbaf2n.mp4"
    for speaker, names in (("s1", S1_CLIPS), ("s4", (S4_CLIP, S4_GAP_CLIP))):
        (root / speaker / "video").mkdir(parents=True)
        for name in names:
            (root / speaker / "video" / f"{name}.mp4").symlink_to(grid_root / speaker / "video" / f"{name}.mp4")
            align = grid_root / speaker / "align" / f"{name}.align"
            if align.exists():
                (root / speaker / "align").mkdir(exist_ok=True)
                (root / speaker / "align" / f"{name}.align").symlink_to(align)
    videos = root / "s1" / "video"
    (videos / "corrupt.mp4").write_bytes(source.read_bytes()[:2000] + os.urandom(3000))
    _ffmpeg("-i", source, "-c", "copy", "-an", videos / "silent.mp4")
    # Frames 20-40 blacked out: the face disappears for 0.8 s.
    black = "drawbox=enable='between(n,20,40)':x=0:y=0:w=iw:h=ih:color=black:t=fill"
    _ffmpeg("-i", source, "-vf", black, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", videos / "facelost.mp4")
    return root


@pytest.fixture(scope="module")
def processed(grid_layout, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid_out")
    summary = preprocess_corpus("grid", grid_layout, out, workers=1, progress=False)
    return out, summary


# ------------------------------------------------------------------------------------ preprocessing
def test_preprocess_keeps_good_clips_and_skips_broken_ones_with_reasons(processed):
    out, summary = processed
    status = {r.id: (r.status, r.reason) for r in summary.results}
    for name in S1_CLIPS:
        assert status[f"s1/{name}"] == ("done", None)
    assert status[f"s4/{S4_CLIP}"] == ("done", None)
    assert status["s1/corrupt"] == ("skipped", "unreadable video")
    assert status["s1/silent"] == ("skipped", "no audio")
    assert status["s1/facelost"] == ("skipped", "face lost")
    assert status[f"s4/{S4_GAP_CLIP}"] == ("skipped", "length mismatch")
    assert {r.reason for r in summary.results if r.reason} <= set(SKIP_REASONS)
    for clip_id in ("s1/corrupt", "s1/silent", "s1/facelost"):
        note = json.loads(skip_path(out, clip_id).read_text())
        assert note["reason"] == status[clip_id][1] and note["detail"] and "\n" not in note["detail"]
    index = json.loads((out / "index.json").read_text())
    assert index["dataset"] == "grid"
    assert [c["id"] for c in index["clips"]] == sorted([f"s1/{n}" for n in S1_CLIPS] + [f"s4/{S4_CLIP}"])
    assert {s["id"] for s in index["skipped"]} == {"s1/corrupt", "s1/silent", "s1/facelost", f"s4/{S4_GAP_CLIP}"}
    text = summary.text()
    assert "4 done" in text and "4 skipped" in text and "face lost" in text and "h of audio" in text


def test_clip_file_holds_aligned_frames_audio_landmarks_and_metadata(processed):
    out, _ = processed
    with np.load(clip_path(out, "s1/bbaf2n")) as clip:
        frames = decode_frames(clip["frames"], clip["frame_offsets"])
        audio, landmarks, matrices = clip["audio"], clip["landmarks"], clip["matrices"]
        assert clip["interpolated"].shape == (75,) and not clip["interpolated"].any()
    assert frames.shape == (75, 128, 96, 3) and frames.dtype == np.uint8
    assert audio.dtype == np.int16 and abs(len(audio) - 3.0 * 16000) < 0.05 * 16000
    assert landmarks.shape == (75, 68, 2) and matrices.shape == (75, 2, 3)
    # Aligned: the stable points sit on the canonical face's, and the mouth in the crop's lower half.
    error = np.linalg.norm(landmarks[:, STABLE_POINTS] - canonical_landmarks()[STABLE_POINTS], axis=-1)
    assert error.mean() < 3.0, error.mean()
    assert (landmarks[:, 48:68, 1] > 64).all() and (landmarks[:, 36:48, 1] < 64).all()
    # Smoothed placement: a fixed point of the face moves less from frame to frame in the crop than
    # it would if every frame were aligned on its own (unsmoothed) landmarks.
    image_points = np.stack([transform_points(invert_transform(m), p) for m, p in zip(matrices, landmarks)])
    raw = np.stack([similarity_transform(p[STABLE_POINTS], canonical_landmarks()[STABLE_POINTS]) for p in image_points])
    anchor = image_points[0, STABLE_POINTS].mean(0)[None]
    jitter = lambda ms: np.abs(np.diff([transform_points(m, anchor)[0] for m in ms], 2, axis=0)).mean()  # noqa: E731
    assert jitter(matrices) < 0.5 * jitter(raw), (jitter(matrices), jitter(raw))

    meta = read_meta(clip_path(out, "s1/bbaf2n"))
    assert meta["speaker"] == "s1" and meta["fps"] == 25.0 and meta["frames"] == 75
    assert meta["transcript"] == "bin blue at f two now"
    assert meta["words"][0] == {"word": "bin", "start": 0.95, "end": 1.18, "start_frame": 23.75, "end_frame": 29.5}
    assert meta["source_video"].endswith("s1/video/bbaf2n.mp4")

    s4 = read_meta(clip_path(out, f"s4/{S4_CLIP}"))
    assert s4["source_size"] == [576, 720] and s4["words"] is None
    assert s4["transcript"] == "bin blue in l zero soon"


def test_rerun_skips_finished_and_skipped_clips(processed, grid_layout):
    out, _ = processed
    finished = clip_path(out, "s1/bbaf2n")
    before = finished.stat().st_mtime_ns
    # A temporary file a killed run left behind (its process is gone) is cleaned up.
    stale = finished.with_name(f".bbaf3s.npz.{os.uname().nodename}-999999999.tmp")
    stale.write_bytes(b"half written")
    summary = preprocess_corpus("grid", grid_layout, out, workers=1, progress=False)
    counts = summary.counts()
    assert counts["exists"] == 4 and counts["skipped"] == 4 and counts["done"] == 0
    assert finished.stat().st_mtime_ns == before
    assert not stale.exists()
    # A clip whose file is gone (e.g. the run was killed before its rename) is done again.
    redo = clip_path(out, "s1/bbaf4p")
    moved = redo.with_suffix(".bak")
    redo.rename(moved)
    try:
        summary = preprocess_corpus("grid", grid_layout, out, workers=1, progress=False, shard="1/1")
        assert summary.counts()["done"] == 1 and redo.exists()
    finally:
        moved.unlink(missing_ok=True)


def test_out_folder_holds_one_dataset(processed, grid_layout):
    out, _ = processed
    with pytest.raises(DatasetError, match="already holds the 'grid' dataset"):
        preprocess_corpus("folder", grid_layout, out, progress=False)


# ------------------------------------------------------------------------------------------ Dataset
def test_dataloader_over_full_clips(processed):
    out, _ = processed
    dataset = TalkingFaceDataset(out)
    assert len(dataset) == 4
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    assert sum(len(b["id"]) for b in batches) == 4
    batch = batches[0]
    assert batch["video"].shape == (2, 75, 3, 128, 96) and batch["video"].dtype == torch.float32
    assert batch["still"].shape == (2, 3, 128, 96)
    assert batch["audio"].shape == (2, 75, 3200) and batch["audio_shifted"].shape == (2, 75, 3200)
    assert batch["landmarks"].shape == (2, 75, 68, 2)
    assert batch["raw_audio"].shape == (2, 75 * 640)
    assert batch["mask"].all() and batch["lengths"].tolist() == [75, 75]
    for key in ("video", "still", "audio", "audio_shifted", "raw_audio"):
        assert batch[key].min() >= -1.0 and batch[key].max() <= 1.0, key
    assert batch["video"].min() < -0.5 and batch["video"].max() > 0.5  # real images, not a constant
    assert batch["audio"].abs().max() > 0.05  # speech, not silence
    # The still is one of the clip's own frames.
    video, still = batch["video"][0], batch["still"][0]
    assert (video - still).abs().flatten(1).max(1).values.min() == 0

    # 75 frames <-> 75 windows, exactly the framing of the clip's own audio.
    item = dataset[0]
    with np.load(clip_path(out, item["id"])) as clip:
        audio = clip["audio"].astype(np.float32) / 32768
        stored_landmarks = clip["landmarks"]
    assert item["length"] == 75 == len(item["video"]) == len(item["audio"])
    np.testing.assert_array_equal(item["audio"].numpy(), frame_audio(audio, 25.0, frames=75))
    np.testing.assert_array_equal(item["landmarks"].numpy(), stored_landmarks)


def test_subsequences_cut_audio_and_landmarks_consistently(processed):
    out, _ = processed
    full = TalkingFaceDataset(out, seed=0)
    dataset = TalkingFaceDataset(out, frames=16, seed=0)
    starts = set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            item = dataset[i]
            start = item["start"]
            starts.add(start)
            reference = full[i]
            assert item["video"].shape == (16, 3, 128, 96) and item["audio"].shape == (16, 3200)
            assert torch.equal(item["audio"], reference["audio"][start : start + 16])
            assert torch.equal(item["video"], reference["video"][start : start + 16])
            assert torch.equal(item["landmarks"], reference["landmarks"][start : start + 16])
            assert len(item["raw_audio"]) == 16 * 640
    assert len(starts) > 1
    assert len(TalkingFaceDataset(out, frames=75)) == 4
    with pytest.raises(DatasetError, match="at least 76 frames"):
        TalkingFaceDataset(out, frames=76)


def test_items_carry_the_eye_openness_and_stills_with_open_eyes(processed):
    from speech_anim.blinks import eye_openness
    from speech_anim.data.datasets import OPEN_STILL

    out, _ = processed
    full, windows = TalkingFaceDataset(out, seed=0), TalkingFaceDataset(out, frames=16, seed=0)
    for i in range(len(full)):
        with np.load(clip_path(out, full.clips[i]["id"])) as clip:
            openness = eye_openness(clip["landmarks"])
            frames = decode_frames(clip["frames"], clip["frame_offsets"])
        item, window = full[i], windows[i]
        np.testing.assert_array_equal(item["openness"].numpy(), openness)
        np.testing.assert_array_equal(window["openness"].numpy(), openness[window["start"] : window["start"] + 16])
        # The still is one of the clip's frames whose eyes are at least OPEN_STILL open.
        still = ((item["still"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        matches = [t for t in range(len(frames)) if np.array_equal(frames[t], still)]
        assert matches and all(openness[t] >= OPEN_STILL for t in matches)
    batch = collate_clips([TalkingFaceDataset(out, seed=0)[i] for i in range(len(full))])
    assert batch["openness"].shape == batch["mask"].shape
    assert torch.all(batch["openness"][~batch["mask"]] == 1.0)  # padding has open eyes


def test_openness_read_off_the_crops_is_computed_once_and_cached(processed, tmp_path):
    import shutil

    from speech_anim.blinks import eye_openness
    from speech_anim.data.datasets import OPENNESS_CACHE, frame_openness
    from speech_anim.face import crop_landmarks

    out = tmp_path / "clips"
    shutil.copytree(processed[0], out)  # the cache is written beside the clips
    dataset = TalkingFaceDataset(out, frames=16, seed=0, openness="frames")
    first = dataset.clips[0]["id"]
    with np.load(clip_path(out, first)) as clip:
        read_off = eye_openness(crop_landmarks(decode_frames(clip["frames"], clip["frame_offsets"])))
        tracked = eye_openness(clip["landmarks"])
    item = dataset[0]
    np.testing.assert_array_equal(item["openness"].numpy(), read_off[item["start"] : item["start"] + 16])
    assert not np.array_equal(read_off, tracked)
    assert (out / OPENNESS_CACHE).is_file()
    np.savez(out / OPENNESS_CACHE, **{first.replace("/", "__"): np.zeros(3, np.float32)})  # one clip cached
    curves = frame_openness(out, [c["id"] for c in dataset.clips])
    assert curves[first].tolist() == [0, 0, 0]  # read back, not computed again
    np.testing.assert_array_equal(curves[dataset.clips[1]["id"]], dataset.crop_openness[dataset.clips[1]["id"]])  # the rest computed
    with pytest.raises(DatasetError, match="openness must be one of"):
        TalkingFaceDataset(out, openness="tracked")


def test_rest_stills_come_from_the_opening_silence_with_their_landmarks(processed):
    from speech_anim.data.datasets import REST_FRAMES

    out, _ = processed
    for mirror in (False, True):
        dataset = TalkingFaceDataset(out, frames=16, rest_still=True, mirror=mirror, seed=3)
        for i in range(len(dataset)):
            with np.load(clip_path(out, dataset.clips[i]["id"])) as clip:
                frames = decode_frames(clip["frames"], clip["frame_offsets"])
                landmarks = clip["landmarks"]
            item = dataset[i]
            still = ((item["still"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
            if item["mirrored"]:
                still = still[:, ::-1]
            matches = [t for t in range(len(frames)) if np.array_equal(frames[t], still)]
            assert matches and min(matches) < REST_FRAMES
            points = item["still_landmarks"].numpy()
            if item["mirrored"]:  # back to the clip's own: sides swapped, x flipped
                points = points[MIRROR_LANDMARKS]
                points[:, 0] = W - 1 - points[:, 0]
            assert any(np.allclose(points, landmarks[t], atol=1e-4) for t in matches)
    batch = collate_clips([dataset[0], dataset[1]])
    assert batch["still_landmarks"].shape == (2, 68, 2)


def test_shifted_audio_is_the_same_clip_out_of_sync(processed):
    out, _ = processed
    for frames in (None, 16):
        dataset = TalkingFaceDataset(out, frames=frames, seed=1)
        for i in range(len(dataset)):
            item = dataset[i]
            shift, start, length = item["shift"], item["start"], item["length"]
            assert 5 <= abs(shift) <= 25
            assert (item["audio_shifted"] - item["audio"]).abs().max() > 0.05
            # Where both exist, shifted window t is in-sync window t + shift of the same clip.
            # Beyond the clip the audio counts as silence: frame the audio with 25 silent frames on each side.
            audio = _stored_audio(out, item["id"])
            full = frame_audio(audio, 25.0, frames=75)
            extended = frame_audio(np.pad(audio, (25 * 640, 25 * 640)), 25.0, frames=125)
            for t in range(length):
                frame = start + t + shift
                np.testing.assert_allclose(item["audio_shifted"][t].numpy(), extended[frame + 25], atol=1e-6)
                if 0 <= frame < 75:
                    np.testing.assert_allclose(item["audio_shifted"][t].numpy(), full[frame], atol=1e-6)
    # A sub-sequence's shift stays inside the clip when it can.
    dataset = TalkingFaceDataset(out, frames=16, seed=2)
    for i in range(len(dataset)):
        item = dataset[i]
        assert 0 <= item["start"] + item["shift"] <= 75 - 16


def _stored_audio(out, clip_id):
    with np.load(clip_path(out, clip_id)) as clip:
        return clip["audio"].astype(np.float32) / 32768


def test_mirroring_flips_frames_and_swaps_landmark_sides(processed):
    out, _ = processed
    assert sorted(MIRROR_LANDMARKS.tolist()) == list(range(68))
    assert (MIRROR_LANDMARKS[MIRROR_LANDMARKS] == np.arange(68)).all()  # mirroring twice is the identity
    plain = TalkingFaceDataset(out, seed=5)
    mirror = TalkingFaceDataset(out, mirror=True, seed=5)
    seen = set()
    for epoch in range(8):
        plain.set_epoch(epoch), mirror.set_epoch(epoch)
        a, b = plain[0], mirror[0]
        seen.add(b["mirrored"])
        if not b["mirrored"]:
            assert torch.equal(a["video"], b["video"]) and torch.equal(a["landmarks"], b["landmarks"])
            continue
        assert torch.equal(b["video"], a["video"].flip(-1)) and torch.equal(b["still"], a["still"].flip(-1))
        pa, pb = a["landmarks"].numpy(), b["landmarks"].numpy()
        # The right eye's outer corner (36, image left) lands where the left eye's outer corner (45) was, mirrored.
        np.testing.assert_allclose(pb[:, 45], np.stack([W - 1 - pa[:, 36, 0], pa[:, 36, 1]], -1), atol=1e-5)
        np.testing.assert_allclose(pb[:, 48], np.stack([W - 1 - pa[:, 54, 0], pa[:, 54, 1]], -1), atol=1e-5)
        np.testing.assert_allclose(pb[:, 8], np.stack([W - 1 - pa[:, 8, 0], pa[:, 8, 1]], -1), atol=1e-5)
        # The sides keep iBUG's order: 36-41 on the image's left, 42-47 on its right, jaw from left to right.
        assert (pb[:, 36:42, 0].mean(1) < pb[:, 42:48, 0].mean(1)).all()
        assert (pb[:, 0, 0] < pb[:, 16, 0]).all()
        # The mirrored eye points lie where the mirrored image has the eyes: near the other eye's place.
        assert np.abs(pb[:, 36:42].mean(1) - pa[:, 36:42].mean(1)).max() < 4
    assert seen == {True, False}


def test_seeded_items_repeat_and_epochs_differ(processed):
    out, _ = processed
    a, b = TalkingFaceDataset(out, frames=8, mirror=True, seed=7), TalkingFaceDataset(out, frames=8, mirror=True, seed=7)
    draws = lambda d: [(d[i]["start"], d[i]["shift"], d[i]["mirrored"]) for i in range(len(d))]  # noqa: E731
    first = draws(a)
    assert first == draws(b) == draws(a)
    a.set_epoch(1)
    assert draws(a) != first
    # Unseeded: DataLoader workers and repeated reads draw differently.
    c = TalkingFaceDataset(out, frames=8)
    assert len({(c[0]["start"], c[0]["shift"]) for _ in range(10)}) > 1


def test_colour_jitter_maps_still_and_video_alike(processed):
    out, _ = processed
    plain = TalkingFaceDataset(out, frames=8, seed=3)
    jittered = TalkingFaceDataset(out, frames=8, seed=3, colour_jitter=0.1)
    a, b = plain[0], jittered[0]
    assert (a["start"], a["shift"]) == (b["start"], b["shift"])  # the same draw, other colours
    assert torch.equal(a["landmarks"], b["landmarks"]) and torch.equal(a["openness"], b["openness"])
    assert (a["video"] - b["video"]).abs().mean() > 0.01
    assert b["video"].min() >= -1 and b["video"].max() <= 1
    # One affine map for the still and the video: fitted on the video's pixels, it gives the still's
    # (up to the clipping at +-1).
    x, y = a["video"].transpose(0, 1).reshape(3, -1), b["video"].transpose(0, 1).reshape(3, -1)
    inside = (y.abs() < 0.99).all(0)
    design = torch.cat([x[:, inside], torch.ones(1, int(inside.sum()))]).T.double()
    fit = torch.linalg.lstsq(design, y[:, inside].T.double()).solution
    still = torch.cat([a["still"].reshape(3, -1), torch.ones(1, a["still"][0].numel())]).T.double() @ fit
    kept = (b["still"].reshape(3, -1).abs() < 0.99).all(0)
    assert (still.T[:, kept] - b["still"].reshape(3, -1)[:, kept].double()).abs().max() < 0.02
    # Other items and epochs draw other maps.
    tint = lambda i: (jittered[i]["still"] - plain[i]["still"]).mean((1, 2))  # noqa: E731
    assert (tint(0) - tint(1)).abs().max() > 1e-3
    with pytest.raises(DatasetError, match="colour_jitter"):
        TalkingFaceDataset(out, colour_jitter=2.0)


def test_voice_warp_changes_the_sound_of_the_windows_not_their_timing(processed):
    out, _ = processed
    plain = TalkingFaceDataset(out, frames=8, seed=3)
    warped = TalkingFaceDataset(out, frames=8, seed=3, voice_warp=0.2)
    a, b = plain[0], warped[0]
    assert (a["start"], a["shift"]) == (b["start"], b["shift"]) and torch.equal(a["video"], b["video"])
    assert torch.equal(a["raw_audio"], b["raw_audio"])
    for key in ("audio", "audio_shifted"):
        assert a[key].shape == b[key].shape and not torch.allclose(a[key], b[key])
        # The same loudness envelope frame by frame: the speech is where it was.
        loud_a, loud_b = a[key].pow(2).mean(1).sqrt(), b[key].pow(2).mean(1).sqrt()
        assert torch.corrcoef(torch.stack([loud_a, loud_b]))[0, 1] > 0.9
    with pytest.raises(DatasetError, match="voice_warp"):
        TalkingFaceDataset(out, voice_warp=-1)


def test_geometry_jitter_moves_frames_and_landmarks_together(processed):
    from speech_anim.face import crop_landmarks

    out, _ = processed
    plain = TalkingFaceDataset(out, frames=8, seed=3)
    moved = TalkingFaceDataset(out, frames=8, seed=3, geometry_jitter=0.06)
    for index in range(len(plain)):
        a, b = plain[index], moved[index]
        frames = ((b["video"].permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        found = crop_landmarks(frames)
        # dlib finds the face where the item's landmarks say it now is, not where it was.
        assert np.linalg.norm(found - b["landmarks"].numpy(), axis=-1).mean() < 1.0
        assert np.linalg.norm(b["landmarks"].numpy() - a["landmarks"].numpy(), axis=-1).mean() > 0.3
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["openness"], b["openness"])
    # The still goes through the same map as the video.
    frame = torch.rand(3, 128, 96) * 2 - 1
    still, video, _ = jitter_geometry(np.random.default_rng(1), 0.06, frame, frame[None], torch.zeros(1, 68, 2))
    assert torch.equal(still, video[0]) and not torch.allclose(still, frame)
    with pytest.raises(DatasetError, match="geometry_jitter"):
        TalkingFaceDataset(out, geometry_jitter=0.5)


def test_mouth_jitter_moves_the_mouth_and_its_landmarks_and_leaves_the_eyes(processed):
    from speech_anim.face import crop_landmarks

    out, _ = processed
    plain = TalkingFaceDataset(out, frames=8, seed=3)
    moved = TalkingFaceDataset(out, frames=8, seed=3, mouth_jitter=3.0)
    shifts = []
    for index in range(len(plain)):
        a, b = plain[index], moved[index]
        frames = ((b["video"].permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        found = crop_landmarks(frames)
        # dlib finds the mouth where the item's landmarks say it now is
        assert np.linalg.norm(found[:, 48:68] - b["landmarks"].numpy()[:, 48:68], axis=-1).mean() < 1.0
        assert torch.equal(b["landmarks"][:, 36:48], a["landmarks"][:, 36:48])  # the eyes stay
        top = int(MOUTH_SHIFT_ROWS[0])
        torch.testing.assert_close(b["video"][:, :, :top], a["video"][:, :, :top], atol=1e-5, rtol=0)
        shifts.append(float((b["landmarks"][:, 48:68, 1] - a["landmarks"][:, 48:68, 1]).mean()))
        assert torch.equal(b["landmarks"][..., 0], a["landmarks"][..., 0]) and torch.equal(a["audio"], b["audio"])
    assert max(abs(d) for d in shifts) > 0.5 and all(abs(d) <= 3.0 + 1e-4 for d in shifts)
    # Whole pixels below the ramp: row y shows row y - d of the input, and the landmarks follow.
    frame = torch.rand(3, 128, 96) * 2 - 1
    points = torch.tensor([[[10.0, 40.0], [10.0, 90.0], [10.0, 68.0]]])
    rng = np.random.default_rng(0)
    d = np.random.default_rng(0).uniform(-2.0, 2.0)
    still, video, moved_points = shift_mouth(rng, 2.0, frame, frame[None], points)
    assert torch.equal(still, video[0])
    assert moved_points[0, 0, 1] == 40.0 and abs(float(moved_points[0, 1, 1]) - (90.0 + d)) < 1e-4
    ramp = (float(moved_points[0, 2, 1]) - MOUTH_SHIFT_ROWS[0]) / (MOUTH_SHIFT_ROWS[1] - MOUTH_SHIFT_ROWS[0])
    assert abs(float(moved_points[0, 2, 1]) - d * ramp - 68.0) < 1e-4  # the middle row read back from 68
    with pytest.raises(DatasetError, match="mouth_jitter"):
        TalkingFaceDataset(out, mouth_jitter=20)


def test_jitter_colours_of_zero_strength_is_the_identity():
    image = torch.rand(2, 3, 4, 5) * 2 - 1
    (same,) = jitter_colours(np.random.default_rng(0), 0.0, image)
    assert torch.allclose(same, image, atol=1e-6)


def test_an_index_past_the_end_is_another_draw_of_the_same_clip(processed):
    out, _ = processed
    dataset = TalkingFaceDataset(out, frames=8, seed=4)
    n = len(dataset)
    draws = {(dataset[1 + k * n]["id"], dataset[1 + k * n]["start"], dataset[1 + k * n]["shift"]) for k in range(6)}
    assert {d[0] for d in draws} == {dataset[1]["id"]} and len(draws) > 1


def test_collate_pads_and_masks_variable_lengths(processed):
    out, _ = processed
    dataset = TalkingFaceDataset(out, frames=20, seed=0)
    long, short = dataset[0], dataset[1]
    for key in ("video", "audio", "audio_shifted", "landmarks"):
        short[key] = short[key][:12]
    short["raw_audio"], short["length"] = short["raw_audio"][: 12 * 640], 12
    batch = collate_clips([long, short])
    assert batch["video"].shape == (2, 20, 3, 128, 96) and batch["audio"].shape == (2, 20, 3200)
    assert batch["lengths"].tolist() == [20, 12]
    assert batch["mask"].tolist() == [[True] * 20, [True] * 12 + [False] * 8]
    assert not batch["video"][1, 12:].any() and not batch["audio"][1, 12:].any()
    assert torch.equal(batch["video"][1, :12], short["video"]) and batch["raw_audio"].shape == (2, 20 * 640)
    assert batch["id"] == [long["id"], short["id"]]


def test_split_names_lists_and_errors(processed, tmp_path):
    out, _ = processed
    with pytest.warns(UserWarning, match="not in"):
        train = TalkingFaceDataset(out, split="train")
    shipped = set(read_split(split_file("grid", "train")))
    assert {c["id"] for c in train.clips} == {c for c in shipped if clip_path(out, c).exists()}
    listed = tmp_path / "mine.txt"
    listed.write_text(f"# two clips\ns1/bbaf3s\n\ns4/{S4_CLIP}\n")
    assert [c["id"] for c in TalkingFaceDataset(out, split=listed).clips] == ["s1/bbaf3s", f"s4/{S4_CLIP}"]
    assert len(TalkingFaceDataset(out, split=["s1/bbaf2n"])) == 1
    # Paper split by speaker: s1 is a training speaker, s4 a test speaker under the seeded roster.
    assert {c["speaker"] for c in TalkingFaceDataset(out, split="paper-train").clips} == {"s1"}
    assert {c["speaker"] for c in TalkingFaceDataset(out, split="paper-test").clips} == {"s4"}
    with pytest.raises(DatasetError, match="unknown split"):
        TalkingFaceDataset(out, split="training")
    with pytest.raises(DatasetError, match="no clips"):
        with pytest.warns(UserWarning):
            TalkingFaceDataset(out, split="unseen")
    with pytest.raises(DatasetError, match="preprocess"):
        TalkingFaceDataset(tmp_path / "nothing")


def test_shipped_grid_split_lists_match_the_generator(grid_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_splits", Path(__file__).parents[1] / "scripts" / "make_splits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    splits = {name: read_split(split_file("grid", name)) for name in ("train", "val", "test", "unseen")}
    assert splits == module.make_splits(grid_root)
    assert [len(splits[n]) for n in ("train", "val", "test", "unseen")] == [860, 100, 100, 10]
    everything = [i for ids in splits.values() for i in ids]
    assert len(set(everything)) == len(everything) == 1070  # disjoint and complete
    speakers = {n: {i.split("/")[0] for i in ids} for n, ids in splits.items()}
    assert speakers == {"train": {"s1", "s4", "s26"}, "val": {"s1"}, "test": {"s1"}, "unseen": {"s31"}}


# ------------------------------------------------------------------------------------------ readers
def test_grid_reader_on_the_real_layout(grid_root):
    records = read_clips("grid", grid_root)
    assert len(records) == 1070
    assert [r.id for r in records] == sorted(r.id for r in records)
    by_id = {r.id: r for r in records}
    assert by_id["s1/bbaf2n"].transcript == "bin blue at f two now" and by_id["s1/bbaf2n"].words[0] == ("bin", 0.95, 1.18)
    assert by_id["s4/bbaf2a"].words is None and by_id["s4/bbaf2a"].transcript == "bin blue at f two again"
    assert grid_sentence("s1/swwv9a") == "set white with v nine again" and grid_sentence("hello!") is None
    words = read_grid_align(grid_root / "s31" / "align" / f"{by_id[[i for i in by_id if i.startswith('s31')][0]].video.stem}.align")
    assert len(words) == 6 and all(s < e for _, s, e in words)


def test_grid_reader_on_the_corpus_layout(grid_root, tmp_path):
    """The corpus' own layout: sN/*.mpg (MPEG-1) with alignments/sN/*.align."""
    (tmp_path / "s1").mkdir()
    (tmp_path / "alignments" / "s1").mkdir(parents=True)
    _ffmpeg("-i", grid_root / "s1" / "video" / "bbaf2n.mp4", "-t", "0.5", "-c:v", "mpeg1video", "-q:v", "5",
            "-c:a", "mp2", tmp_path / "s1" / "bbaf2n.mpg")  # fmt: skip
    (tmp_path / "alignments" / "s1" / "bbaf2n.align").write_text((grid_root / "s1" / "align" / "bbaf2n.align").read_text())
    (records,) = grid_clips(tmp_path)
    assert records.id == "s1/bbaf2n" and records.video.suffix == ".mpg" and records.words[0][0] == "bin"
    from speech_anim.video import read_video

    frames, fps = read_video(records.video)
    assert fps == 25.0 and frames.shape[1:] == (288, 360, 3)


@pytest.fixture(scope="module")
def remuxed(grid_root, tmp_path_factory):
    """Tiny CREMA-D, TCD-TIMIT, LRW and folder layouts built from one GRID clip."""
    root = tmp_path_factory.mktemp("corpora")
    source = grid_root / "s1" / "video" / "bbaf2n.mp4"

    def link(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(source)

    crema = root / "crema"
    (crema / "VideoFlash").mkdir(parents=True)
    (crema / "AudioWAV").mkdir()
    # Video-only FLV (Flash's own codec): the speech comes from AudioWAV, as in the corpus.
    _ffmpeg("-i", source, "-c:v", "flv1", "-q:v", "4", "-an", crema / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    _ffmpeg("-i", source, "-vn", "-c:a", "pcm_s16le", crema / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    (crema / "VideoFlash" / "notes.flv").write_bytes(b"")  # not a corpus name: ignored
    timit = root / "timit"
    link(timit / "volunteers" / "01M" / "straightcam" / "sa1.mp4")
    (timit / "volunteers" / "01M" / "audio").mkdir()
    _ffmpeg("-i", source, "-vn", "-c:a", "pcm_s16le", timit / "volunteers" / "01M" / "audio" / "sa1.wav")
    link(timit / "volunteers" / "02F" / "Clips" / "straightcam" / "sx10.mp4")
    lrw = root / "lrw"
    for i, split in enumerate(("train", "val", "test")):
        link(lrw / "ABOUT" / split / f"ABOUT_0000{i}.mp4")
    link(lrw / "WORLD" / "train" / "WORLD_00001.mp4")
    folder = root / "folder"
    link(folder / "alice" / "hello.mp4")
    (folder / "alice" / "hello.txt").write_text("bin blue\n at f two now\n")
    link(folder / "solo.mp4")
    return root


def test_crema_d_reader_and_preprocessing_with_separate_audio(remuxed, tmp_path):
    (record,) = read_clips("crema-d", remuxed / "crema")
    assert record.id == "1001/1001_DFA_ANG_XX" and record.speaker == "1001"
    assert record.attributes == {"sentence": "DFA", "emotion": "anger", "intensity": "unspecified"}
    assert record.transcript == "Don't forget a jacket" and record.audio.name == "1001_DFA_ANG_XX.wav"
    assert paper_split("crema-d", record.speaker) in ("train", "val", "test")
    summary = preprocess_corpus("crema-d", remuxed / "crema", tmp_path, progress=False)
    assert summary.counts()["done"] == 1
    meta = read_meta(clip_path(tmp_path, record.id))
    assert meta["source_audio"].endswith("AudioWAV/1001_DFA_ANG_XX.wav") and meta["attributes"]["emotion"] == "anger"
    item = TalkingFaceDataset(tmp_path)[0]
    assert item["video"].shape == (75, 3, 128, 96) and item["speaker"] == "1001"


def test_tcd_timit_reader_finds_separate_audio(remuxed):
    records = read_clips("tcd-timit", remuxed / "timit")
    assert [(r.id, r.speaker) for r in records] == [("01M/sa1", "01M"), ("02F/sx10", "02F")]
    assert records[0].audio.name == "sa1.wav" and records[1].audio is None


def test_lrw_reader_takes_the_split_from_folders(remuxed):
    records = read_clips("lrw", remuxed / "lrw")
    assert [r.id for r in records] == ["ABOUT/test/ABOUT_00002", "ABOUT/train/ABOUT_00000", "ABOUT/val/ABOUT_00001",
                                       "WORLD/train/WORLD_00001"]  # fmt: skip
    assert [paper_split("lrw", r.speaker, r.attributes) for r in records] == ["test", "train", "val", "train"]
    assert records[0].transcript == "about"


def test_folder_reader_reads_transcripts(remuxed):
    records = read_clips("folder", remuxed / "folder")
    assert [(r.id, r.speaker, r.transcript) for r in records] == [
        ("alice/hello", "alice", "bin blue at f two now"), ("solo", "", None)
    ]


def test_reader_errors_are_one_line(tmp_path):
    for call, match in (
        (lambda: read_clips("voxceleb", tmp_path), "unknown dataset"),
        (lambda: read_clips("grid", tmp_path / "missing"), "not a folder"),
        (lambda: read_clips("grid", tmp_path), "no grid clips"),
        (lambda: read_clips("crema-d", tmp_path), "VideoFlash"),
        (lambda: paper_split("grid", "s99"), "not in the grid roster"),
    ):
        with pytest.raises(DatasetError, match=match) as error:
            call()
        assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------- shards
def test_shards_partition_the_clips_disjointly(grid_root, processed, grid_layout):
    ids = [r.id for r in read_clips("grid", grid_root)]
    parts = [[i for i in ids if in_shard(i, (k, 3))] for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(ids)
    assert all(len(p) > 0.8 * len(ids) / 3 for p in parts)
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(DatasetError, match="K/N"):
            parse_shard(bad)
    out, _ = processed
    local = {r.id for r in read_clips("grid", grid_layout)}
    seen = []
    for k in (1, 2):  # the second shard through the process pool
        summary = preprocess_corpus("grid", grid_layout, out, shard=f"{k}/2", workers=k, progress=False)
        seen.append({r.id for r in summary.results})
        assert all(in_shard(i, (k, 2)) for i in seen[-1])
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == local


def test_cli_reports_input_errors_in_one_line(tmp_path, capsys):
    cli = pytest.importorskip("speech_anim.cli")
    code = cli.main(["preprocess", "--dataset", "grid", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not a folder" in err and "\n" not in err


def test_the_preprocess_module_is_reachable_as_an_attribute():
    # The function is preprocess_corpus, so `speech_anim.data.preprocess` stays the module.
    import speech_anim.data

    assert speech_anim.data.preprocess.decode_frames is decode_frames
    assert speech_anim.data.preprocess_corpus is speech_anim.data.preprocess.preprocess_corpus
