"""hqq's half-quadratic proximal solver for the zero points, restated so a CPU runs it from its caches.

hqq's ``optimize_weights_proximal_legacy`` (the solver ``hqq.core.quantize.Quantizer`` uses) makes about
20 passes over the whole weight matrix per iteration, for 20 iterations, each pass a new full-size
tensor: on a CPU that is memory traffic, not arithmetic (SmolLM2-135M: ~14 s of a 2-core smash, more
than pruna's whole smash budget allows, see ``benchmarks/smash_time.py``). Two changes, same iteration:

- Algebra. hqq never changes ``scale`` in this solver, so ``w * scale`` and its row means are computed
  once, and the new zero point ``mean(q - (w - e) * scale)`` is ``mean(q) - mean(w * scale) +
  mean(e) * scale`` (``scale`` is constant along a group). The residual ``w - (q - zero) / scale`` is
  ``(w * scale + zero - q) / scale``, which reuses the rounding's input. About 10 passes per iteration.
- Blocks. Groups are independent of each other except through the stopping rule (stop at the first
  iteration whose mean absolute error does not improve), so the solver runs block by block, all
  iterations on a block while it sits in cache, each block with its own stopping rule. That is the
  one deliberate departure from hqq: a block stops when *its* error stops improving rather than when
  the whole matrix's does, so no group is held to another group's schedule. With one block per matrix
  the result is hqq's up to float rounding order (``tests/smash/test_algorithms.py`` checks both).
"""

from __future__ import annotations

import torch

# hqq's defaults (hqq.core.optimize.optimize_weights_proximal_legacy): lp_norm 0.7, beta 10.
LP_NORM = 0.7
BETA = 10.0
# shrink_lp is exactly zero for residuals at or below this magnitude: |r|^(2-p) <= 1/beta.
SHRINK_THRESHOLD = BETA ** (-1.0 / (2.0 - LP_NORM))
# Settled groups are dropped from a block once they are at least 1/COMPACT_FRACTION of its moving ones.
COMPACT_FRACTION = 8
# Weights per block: 4 MiB of float32, so a block and its few temporaries stay in this CPU class's L3.
BLOCK_ELEMENTS = 1 << 20


def optimize_zero(
    w: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    max_value: int,
    iterations: int,
    *,
    block_elements: int | None = None,
) -> torch.Tensor:
    """Zero points after hqq's proximal iterations, for groups laid out as rows.

    ``w``: (groups, group_size) float32; ``scale`` (hqq's quantization scale, ``max_value / range``) and
    ``zero``: (groups, 1). Returns the new zero, (groups, 1); ``scale`` is unchanged, as in hqq.
    ``block_elements``: weights per block (default ``BLOCK_ELEMENTS``).
    """
    rows = max(1, (block_elements or BLOCK_ELEMENTS) // w.shape[1])
    result = torch.empty_like(zero)
    for start in range(0, w.shape[0], rows):
        block = slice(start, start + rows)
        result[block] = _optimize_block(w[block], scale[block], zero[block], max_value, iterations)
    return result


def _optimize_block(
    w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, max_value: int, iterations: int
) -> torch.Tensor:
    result = zero.clone()
    active = _Groups(w * scale, scale, zero)
    settled_error = 0.0  # sum of the settled groups' mean |w - w_r|, which no longer changes
    best = float("inf")
    for _ in range(iterations):
        shifted = active.scaled + active.zero
        q = torch.round(shifted).clamp_(0, max_value)
        gap = shifted.sub_(q).abs_()  # |w - (q - zero) / scale| * scale
        group_error = gap.mean(dim=1) / active.scale.squeeze(1)
        current = (settled_error + float(group_error.sum())) / len(w)  # hqq's mean |w - w_r|
        new = q.mean(dim=1, keepdim=True) - active.scaled_mean
        new += _shrunk_mean(active.scaled, q, active.zero, gap, active.scale)
        # hqq's rule: the step whose input did not improve the error still updates zero, then stops
        settled = (new == active.zero).squeeze(1)
        result[active.index] = new
        if not current < best:
            break
        best = current
        if int(settled.sum()) * COMPACT_FRACTION < len(active.index):
            active.zero = new  # too few settled to pay for a copy: they run on, staying where they are
            continue
        settled_error += float(group_error[settled].sum())
        active = active.keep(~settled, new)
        if not len(active.index):
            break
    return result


class _Groups:
    """The groups of a block still moving, with what each iteration reads of them.

    A group whose zero point came out of an iteration unchanged is at a fixed point: each iteration is
    a function of the group's own weights and zero alone, so every later one returns the same zero.
    Such groups are dropped from the work (on SmolLM2-135M at 4 bits, 63 % after the second iteration,
    94 % after the fifth), which leaves every result as it was.
    """

    def __init__(self, scaled: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> None:
        self.index = torch.arange(len(scaled))
        self.scaled = scaled
        self.scaled_mean = scaled.mean(dim=1, keepdim=True)
        self.scale = scale
        self.zero = zero

    def keep(self, moving: torch.Tensor, zero: torch.Tensor) -> _Groups:
        kept = object.__new__(_Groups)
        kept.index = self.index[moving]
        kept.scaled = self.scaled[moving]
        kept.scaled_mean = self.scaled_mean[moving]
        kept.scale = self.scale[moving]
        kept.zero = zero[moving]
        return kept


def _shrunk_mean(
    scaled: torch.Tensor, q: torch.Tensor, zero: torch.Tensor, gap: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """``mean(shrink_lp(r)) * scale`` per group, ``r = w - (q - zero) / scale`` the residual.

    ``shrink_lp(r) = sign(r) * max(|r| - |r|^(p-1) / beta, 0)`` is zero unless ``|r|^(2-p) > 1/beta``,
    i.e. ``|r| > SHRINK_THRESHOLD`` (0.17 for hqq's p and beta): far above the residual of any weight
    matrix of ordinary magnitude, so the power (most of the solver's arithmetic) runs only on groups
    that have such a residual, and on those exactly as hqq computes it.
    """
    result = torch.zeros_like(zero)
    rows = (gap.amax(dim=1, keepdim=True) > SHRINK_THRESHOLD * (1 - 1e-4) * scale).squeeze(1)
    if not bool(rows.any()):
        return result
    s = scale[rows]
    r = (scaled[rows] + zero[rows] - q[rows]) / s
    magnitude = r.abs()
    shrunk = (magnitude - magnitude.pow(LP_NORM - 1) / BETA).clamp_min_(0.0).copysign_(r)
    result[rows] = shrunk.mean(dim=1, keepdim=True) * s
    return result
