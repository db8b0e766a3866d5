"""Loss blocks: soft-target cross-entropy with class weights, focal loss, label smoothing,
and the distillation loss.  All take logits ``(B, K)`` and integer labels ``(B,)`` and return
per-sample losses ``(B,)`` (the trainer sums them and divides by the global batch size).

Label smoothing ``eps`` uses the target ``(1 - eps) * onehot + eps / K``.  The focal loss is
``-sum_k w_y * q_k * (1 - p_k)^gamma * log p_k`` with ``q`` the (smoothed) target; at
``gamma = 0`` it equals the cross-entropy.  Class weights multiply each sample's loss by the
weight of its true class.
"""
import numpy as np
from mxnet import gluon

__all__ = ["SoftTargetCE", "FocalLoss", "DistillationLoss", "class_weights_from_counts", "make_loss"]


class _WeightedLoss(gluon.HybridBlock):
    def __init__(self, num_classes, class_weights=None, label_smoothing=0.0, **kwargs):
        super().__init__(**kwargs)
        self._num_classes = int(num_classes)
        self._eps = float(label_smoothing)
        w = np.ones(num_classes, np.float32) if class_weights is None else np.asarray(class_weights, np.float32)
        if w.shape != (num_classes,):
            raise ValueError(f"class_weights must have {num_classes} entries, got {w.shape}")
        with self.name_scope():
            self.class_weights = self.params.get_constant("class_weights", w.reshape(1, -1))

    def _target(self, F, label):
        onehot = F.one_hot(label, self._num_classes)
        if self._eps:
            onehot = onehot * (1.0 - self._eps) + self._eps / self._num_classes
        return onehot

    def _weight(self, F, label, class_weights):
        # weight of each sample's true class: (B,)
        return F.sum(F.broadcast_mul(F.one_hot(label, self._num_classes), class_weights), axis=1)


class SoftTargetCE(_WeightedLoss):
    """Cross-entropy with optional class weights and label smoothing."""

    def hybrid_forward(self, F, logits, label, class_weights):
        logp = F.log_softmax(logits.astype("float32"), axis=-1)
        loss = -F.sum(self._target(F, label) * logp, axis=-1)
        return loss * self._weight(F, label, class_weights)


class FocalLoss(_WeightedLoss):
    """Focal loss (Lin et al. 2017) on softmax outputs; reduces to cross-entropy at gamma=0."""

    def __init__(self, num_classes, gamma=2.0, **kwargs):
        super().__init__(num_classes, **kwargs)
        self._gamma = float(gamma)

    def hybrid_forward(self, F, logits, label, class_weights):
        logp = F.log_softmax(logits.astype("float32"), axis=-1)
        mod = F.power(F.relu(1.0 - F.exp(logp)), self._gamma) if self._gamma else F.ones_like(logp)
        loss = -F.sum(self._target(F, label) * mod * logp, axis=-1)
        return loss * self._weight(F, label, class_weights)


class DistillationLoss(gluon.HybridBlock):
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * hard``.

    ``hard`` is any per-sample hard-label loss block (e.g. :class:`SoftTargetCE`).
    """

    def __init__(self, hard_loss, alpha=0.5, temperature=4.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self._alpha = float(alpha)
        self._t = float(temperature)
        with self.name_scope():
            self.hard = hard_loss

    def hybrid_forward(self, F, student_logits, teacher_logits, label):
        s = F.log_softmax(student_logits.astype("float32") / self._t, axis=-1)
        t = F.log_softmax(teacher_logits.astype("float32") / self._t, axis=-1)
        kl = F.sum(F.exp(t) * (t - s), axis=-1) * (self._t ** 2)
        return self._alpha * kl + (1.0 - self._alpha) * self.hard(student_logits, label)


class SimilarityKDLoss(gluon.HybridBlock):
    """Feature-level distillation by similarity preservation (Tung & Mori, ICCV 2019):
    ``weight * ||norm(Fs Fs^T) - norm(Ft Ft^T)||_F^2 / B^2`` with row-L2-normalised (B, B)
    Gram matrices of the student's and teacher's features (B, Ds) and (B, Dt).  It matches
    which samples each network finds alike, so Ds and Dt may differ and no projection layer is
    needed.  Returns (B,): row i's share, so that the mean over the batch is the loss."""

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self._w = float(weight)

    def hybrid_forward(self, F, student_features, teacher_features):
        def gram(f):
            f = F.reshape(f.astype("float32"), shape=(0, -1))                # (B, D)
            g = F.dot(f, f, transpose_b=True)                                # (B, B)
            return F.L2Normalization(g, mode="instance")                     # rows of unit norm
        d = gram(student_features) - gram(teacher_features)                  # (B, B)
        # row i: sum_j d_ij^2 / B; the mean over rows is ||d||^2 / B^2
        return self._w * F.mean(F.square(d), axis=1)                         # (B,)


def class_weights_from_counts(counts, mode):
    """``none`` → ones; ``balanced`` → ``n / (K * count_k)`` (absent classes get weight 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    if mode == "none":
        return np.ones(len(counts), np.float32)
    if mode != "balanced":
        raise ValueError(f"unknown class weighting {mode!r}")
    k = int((counts > 0).sum())
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, counts.sum() / (k * counts), 0.0)
    return w.astype(np.float32)


def make_loss(loss_cfg, num_classes, class_counts):
    """Loss block for a :class:`~emotion_mx.training.config.LossConfig`."""
    weights = class_weights_from_counts(class_counts, loss_cfg.class_weights)
    if loss_cfg.type == "focal":
        return FocalLoss(num_classes, gamma=loss_cfg.focal_gamma, class_weights=weights,
                         label_smoothing=loss_cfg.label_smoothing)
    return SoftTargetCE(num_classes, class_weights=weights, label_smoothing=loss_cfg.label_smoothing)
