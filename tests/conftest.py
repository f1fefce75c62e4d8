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
