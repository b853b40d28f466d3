"""Signal processing on tensors: the log-mel frontend, augmentation, pitch/time stretch, the export-friendly DFT frontend.

Imports nothing of audiocls but :mod:`audiocls.errors`.
"""
