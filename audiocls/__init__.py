"""audiocls: ImageNet-pretrained CNNs on mel-spectrograms for audio classification, with Lightning.

The public names below are imported on first use (``audiocls.AudioClassifier``), so ``import audiocls`` and the
``audiocls --help`` command stay light: neither imports torch or Lightning.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "AugmentConfig": "audiocls.audio.augment",
    "FrontendConfig": "audiocls.audio.frontend",
    "LogMelFrontend": "audiocls.audio.frontend",
    "build_frontend": "audiocls.audio.frontend",
    "AudioDataModule": "audiocls.data.base",
    "Clip": "audiocls.data.clips",
    "ESC50DataModule": "audiocls.data.esc50",
    "SyntheticDataModule": "audiocls.data.synthetic",
    "AudioclsError": "audiocls.errors",
    "AudioLoadError": "audiocls.errors",
    "ConfigError": "audiocls.errors",
    "DataError": "audiocls.errors",
    "build_backbone": "audiocls.models.backbone",
    "AudioClassifier": "audiocls.models.classifier",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'audiocls' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
