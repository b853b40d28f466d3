"""The network: :class:`~audiocls.models.classifier.AudioClassifier`, the one door to timm, weight files, partial transfer.

Imports :mod:`audiocls.audio` at most; never data, training or commands.
"""
