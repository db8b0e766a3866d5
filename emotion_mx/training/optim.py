"""Optimizers and learning-rate schedules.

The learning rate is a pure function of (epoch, step) plus, for ``plateau``, a small state
saved in every checkpoint — so a resumed run follows exactly the same schedule.  The trainer
sets it before every step with ``Trainer.set_learning_rate``.
"""
import math

import mxnet as mx
import numpy as np

__all__ = ["AdamW", "make_optimizer", "learning_rate", "PlateauTracker"]


@mx.optimizer.register
class AdamW(mx.optimizer.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``w -= lr * (m_hat / (sqrt(v_hat)
    + eps) + wd * w)``, bias correction folded into the step (``eps`` not rescaled).  MXNet 1.9's
    registry has no ``adamw``; registered as ``adamw``.

    The update runs MXNet's fused ``contrib.adamw_update`` (one kernel for the moments and the
    weight; 8.8x faster per step than the ndarray expression on ``late_base``) with its ``lr``
    set to the bias-corrected step and ``wd`` to ``lr * wd``, so the formula is the one above.
    ``fused=False`` keeps the ndarray expression (the reference the tests and
    ``benchmarks/train_speed.py`` compare with).  States are ``(mean, var)`` either way, so
    checkpoints of both kinds resume with either.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, fused=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.fused = fused
        self._rescale_nd = {}

    def create_state(self, index, weight):
        return (mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def __getstate__(self):            # pickled into checkpoints: no NDArray cache
        state = dict(super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__)
        state.pop("_rescale_nd", None)
        return state

    def _rescale(self, ctx):
        # the fused op takes rescale_grad as an NDArray (it skips the update when it is 0 or
        # not finite); one cached per (context, value): the Trainer sets it every step.
        cache = self.__dict__.setdefault("_rescale_nd", {})
        key = (ctx, float(self.rescale_grad))
        if key not in cache:
            cache.clear() if len(cache) > 8 else None
            cache[key] = mx.nd.full((1,), float(self.rescale_grad), ctx=ctx)
        return cache[key]

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        t = self._index_update_count[index]
        mean, var = state
        step = lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        if getattr(self, "fused", True) and weight.dtype == np.float32:
            clip = -1.0 if self.clip_gradient is None else float(self.clip_gradient)
            mx.nd.contrib.adamw_update(weight, grad, mean, var, self._rescale(weight.context), lr=step, eta=1.0,
                                       beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon, wd=lr * wd,
                                       clip_gradient=clip, out=weight)
            return
        g = grad * self.rescale_grad
        if self.clip_gradient is not None:
            g = mx.nd.clip(g, -self.clip_gradient, self.clip_gradient)
        mean[:] = self.beta1 * mean + (1.0 - self.beta1) * g
        var[:] = self.beta2 * var + (1.0 - self.beta2) * mx.nd.square(g)
        weight[:] = weight - step * mean / (mx.nd.sqrt(var) + self.epsilon) - (lr * wd) * weight


def make_optimizer(optim_cfg):
    """``(name, params)`` for ``gluon.Trainer``."""
    params = {"learning_rate": optim_cfg.lr, "wd": optim_cfg.wd}
    if optim_cfg.clip_gradient is not None:
        params["clip_gradient"] = optim_cfg.clip_gradient
    if optim_cfg.optimizer == "sgd":
        params["momentum"] = optim_cfg.momentum
    return optim_cfg.optimizer, params


def learning_rate(optim_cfg, epochs, epoch, step, steps_per_epoch, plateau_scale=1.0):
    """Learning rate for ``step`` (0-based) of ``epoch`` (0-based).

    Linear warm-up over ``warmup_epochs`` (per step, starting above 0), then ``cosine`` decay to
    ``min_lr_ratio * lr`` at the end of training, ``constant``, or ``plateau`` (``lr`` times the
    factor kept by :class:`PlateauTracker`).
    """
    base = optim_cfg.lr
    t = epoch + (step + 1) / max(1, steps_per_epoch)   # fraction of epochs done after this step
    w = optim_cfg.warmup_epochs
    if w > 0 and t <= w:
        return base * t / w
    if optim_cfg.schedule == "cosine":
        span = max(epochs - w, 1e-12)
        p = min(1.0, max(0.0, (t - w) / span))
        lo = optim_cfg.min_lr_ratio
        return base * (lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * p)))
    if optim_cfg.schedule == "plateau":
        return base * plateau_scale
    return base


class PlateauTracker:
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, factor, patience, min_scale=1e-3):
        self.factor, self.patience, self.min_scale = factor, patience, min_scale
        self.scale, self.best, self.bad = 1.0, -math.inf, 0

    def update(self, score):
        if score > self.best:
            self.best, self.bad = score, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                self.scale = max(self.min_scale, self.scale * self.factor)
                self.bad = 0
        return self.scale

    def state_dict(self):
        return {"scale": self.scale, "best": self.best if math.isfinite(self.best) else None, "bad": self.bad}

    def load_state_dict(self, state):
        self.scale = float(state["scale"])
        self.best = -math.inf if state["best"] is None else float(state["best"])
        self.bad = int(state["bad"])
