"""Shared fixtures: paths to the real data beside the repo, skipping with a reason when absent."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GRID = SHARED / "data" / "grid"
MODELS = SHARED / "models"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: put the project's shared/ folder beside the repo to run this test")
    return path


@pytest.fixture(scope="session")
def grid_root() -> Path:
    return _need(GRID)


@pytest.fixture(scope="session")
def s1_clip(grid_root) -> Path:
    return _need(grid_root / "s1" / "video" / "bbaf2n.mp4")


@pytest.fixture(scope="session")
def shared_models() -> Path:
    return _need(MODELS)


S1_CLIPS = ("bbaf2n", "bbaf3s", "bbaf4p")


@pytest.fixture(scope="session")
def clips(grid_root, tmp_path_factory) -> Path:
    """Three real s1 clips, preprocessed with the dataset module."""
    from speech_anim.data.preprocess import preprocess_corpus

    layout = tmp_path_factory.mktemp("grid_layout")
    for name in S1_CLIPS:
        for folder, suffix in (("video", "mp4"), ("align", "align")):
            (layout / "s1" / folder).mkdir(parents=True, exist_ok=True)
            (layout / "s1" / folder / f"{name}.{suffix}").symlink_to(grid_root / "s1" / folder / f"{name}.{suffix}")
    out = tmp_path_factory.mktemp("grid_clips")
    summary = preprocess_corpus("grid", layout, out, workers=1, progress=False)
    assert summary.counts()["done"] == len(S1_CLIPS)
    return out
