"""audiocls: ImageNet-pretrained CNNs on mel-spectrograms for audio classification, with Lightning."""

from audiocls.audio.augment import AugmentConfig
from audiocls.audio.frontend import FrontendConfig, LogMelFrontend, build_frontend
from audiocls.data.base import AudioDataModule
from audiocls.data.clips import Clip
from audiocls.data.esc50 import ESC50DataModule
from audiocls.data.synthetic import SyntheticDataModule
from audiocls.errors import AudioclsError, AudioLoadError, ConfigError, DataError
from audiocls.models.backbone import build_backbone
from audiocls.models.classifier import AudioClassifier

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
