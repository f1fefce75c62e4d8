"""Talking-face corpora: readers of their layouts, preprocessing into aligned clips, the Dataset."""

from .datasets import MIRROR_LANDMARKS, TalkingFaceDataset, collate_clips, read_split, split_file
from .preprocess import build_index, preprocess_corpus
from .readers import READERS, ClipRecord, DatasetError, paper_split, read_clips

__all__ = [
    "MIRROR_LANDMARKS", "TalkingFaceDataset", "collate_clips", "read_split", "split_file",
    "build_index", "preprocess_corpus",
    "READERS", "ClipRecord", "DatasetError", "paper_split", "read_clips",
]  # fmt: skip
