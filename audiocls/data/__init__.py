"""Datasets: one LightningDataModule per dataset over the shared :class:`AudioDataModule`."""

from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip, ClipDataset
from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.folder import CSVDataModule, FolderDataModule
from audiocls.data.fsd50k import FSD50KDataModule
from audiocls.data.fsdd import FSDDDataModule
from audiocls.data.gtzan import GTZANDataModule
from audiocls.data.mixtures import ESC50MixturesDataModule
from audiocls.data.synthetic import SyntheticDataModule
from audiocls.data.urbansound8k import UrbanSound8KDataModule

__all__ = [
    "AudioDataModule",
    "Clip",
    "ClipDataset",
    "CSVDataModule",
    "ESC50DataModule",
    "ESC50MixturesDataModule",
    "FolderDataModule",
    "FSD50KDataModule",
    "FSDDDataModule",
    "GTZANDataModule",
    "SyntheticDataModule",
    "UrbanSound8KDataModule",
]
