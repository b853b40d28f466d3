"""audiocls: ImageNet-pretrained CNNs on mel-spectrograms for audio classification, with Lightning."""

from audiocls.augment import AugmentConfig
from audiocls.data.base import AudioDataModule, Clip
from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.synthetic import SyntheticDataModule
from audiocls.errors import AudioclsError, AudioLoadError, ConfigError, DataError
from audiocls.features import FrontendConfig, LogMelFrontend, build_frontend
from audiocls.model import AudioClassifier, build_backbone

__version__ = "0.1.0"

__all__ = [
    "AudioClassifier",
    "AudioDataModule",
    "AudioLoadError",
    "AudioclsError",
    "AugmentConfig",
    "Clip",
    "ConfigError",
    "DataError",
    "ESC50DataModule",
    "FrontendConfig",
    "LogMelFrontend",
    "SyntheticDataModule",
    "build_backbone",
    "build_frontend",
]
