"""Datasets: one LightningDataModule per dataset over the shared :class:`AudioDataModule`."""

from audiocls.data.base import AudioDataModule, Clip, ClipDataset
from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.synthetic import SyntheticDataModule

__all__ = ["AudioDataModule", "Clip", "ClipDataset", "ESC50DataModule", "SyntheticDataModule"]
