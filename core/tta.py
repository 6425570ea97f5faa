"""Test-time adaptation by self-supervision: Algorithm 1 of Nah et al., "Clean Images are Hard to Reblur" (ICLR 2022).

The deblurring module M_D is fine-tuned on the single test image B so that its output L is hard to reblur:

    L^0 = M_D(B)
    for i = 0 .. N-1:   L = M_D(B);  loss = || M_R(L) - stopgrad(L) ||_1  (Eq. 7);  step on M_D's weights
    L^N = M_D(B);  return histogram_matching(L^N, L^0)

Gradients reach M_D only through M_R(L): the target L_* is the same image detached (Eq. 7: letting the gradient
flow through L_* can pull both L and M_R(L) towards a blurry minimum). So each step looks for the latent image
that M_R reblurs to the current output (Fig. 4), which is a learned deconvolution.

Choices made where the paper is silent:

- The optimiser: Algorithm 1 says only "update theta_D by the gradient and mu = 3e-6". The paper uses Adam for
  all of its training (Supplement S1, "Adam optimizer is used in all cases"), so this is Adam with PyTorch's
  defaults (betas 0.9 / 0.999, eps 1e-8), its state fresh for every image. Plain SGD at 3e-6 would leave the
  output practically unchanged in 5 steps, given the size of a mean-L1 gradient.
- The norm: L1, mean over pixels and channels (Supplement S1: "we always set p = 1"); with Adam the
  mean-versus-sum scale does not matter. It is computed on the image itself: the input is padded to
  ``model.pad_multiple`` for M_D, L is cropped back, and M_R (which has no strides) runs on the cropped L.
- Histogram matching: ``skimage.exposure.match_histograms`` per colour channel, of the raw adapted output
  onto the first output as the model shows it (clamped to [0, 1]); the matched values come from the
  reference's own values, so they stay in [0, 1].
- M_D is adapted in a deep copy, in eval mode (it has no normalisation or dropout, so modes do not differ).
  M_R is the shared module, untouched: gradients are taken with ``torch.autograd.grad`` with respect to the
  copy's weights only, so nothing accumulates in M_R (or anywhere in the shared model).
- Divergence (a learning rate far too large): when a step produces a non-finite loss or output, or an
  output beyond +-1000 (float32 can hold a blown-up network's output for a step or two before it turns
  into inf and NaN), adaptation stops there: that step is not counted, the last finite image is returned,
  and ``diverged`` is set with a message. A NaN never leaves.
- Cost: each step is one forward and one backward pass of M_D and M_R (the forward after an update is
  the next step's forward), plus one forward of each at the end, and a histogram matching per callback.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from skimage.exposure import match_histograms

from core.models.base import pad_to_multiple

PAPER_LR = 3e-6  # Algorithm 1, line 2
BLOWUP = 1e3  # an output this far outside [0, 1] has diverged, even while float32 still holds it


@dataclass
class Adaptation:
    """What ``adapt`` returns; ``losses`` and ``losses_after`` hold one value per completed step.

    ``losses[i]`` is Eq. 7 on the output L^i before step i + 1, ||M_R(L^i) - L^i||. ``losses_after[i]`` is
    that same step's objective once it has been taken, ||M_R(L^(i+1)) - L^i|| with the target L^i kept
    fixed: what the update actually lowers. The self-loss ``losses`` itself need not fall, since its target
    moves with L; it falls only where M_R finds the adapted output harder to reblur, which is what a
    trained M_R is for (with random weights it goes either way).
    """

    image: torch.Tensor  # 1 x 3 x H x W in [0, 1]: histogram-matched adapted output (``first`` when no step was done)
    losses: list[float]
    first: torch.Tensor  # 1 x 3 x H x W in [0, 1]: the un-adapted output, exactly the model's eval forward
    steps_done: int
    cancelled: bool = False
    diverged: bool = False
    message: str = ""
    losses_after: list[float] = field(default_factory=list)


def match_to(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram matching of a 1 x 3 x H x W image onto a reference of the same shape, clamped."""
    source = image.detach()[0].permute(1, 2, 0).cpu().double().numpy()
    target = reference.detach()[0].permute(1, 2, 0).cpu().double().numpy()
    matched = match_histograms(source, target, channel_axis=-1)
    result = torch.from_numpy(np.ascontiguousarray(matched)).permute(2, 0, 1).unsqueeze(0)
    return result.to(device=reference.device, dtype=reference.dtype).clamp(0.0, 1.0)


def _check(model, blurry: torch.Tensor, steps: int, lr: float) -> None:
    if not all(isinstance(getattr(model, name, None), torch.nn.Module) for name in ("deblur", "reblur")):
        raise TypeError(
            f"test-time adaptation needs a model with .deblur (M_D) and .reblur (M_R), got {type(model).__name__}"
        )
    if blurry.dim() != 4 or blurry.shape[0] != 1 or blurry.shape[1] != 3:
        raise ValueError(f"expected a 1 x 3 x H x W image, got shape {tuple(blurry.shape)}")
    if not torch.isfinite(blurry).all() or blurry.min() < 0 or blurry.max() > 1:
        raise ValueError("the blurry image must hold finite values in [0, 1]")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"the learning rate must be a positive number, got {lr}")


def adapt(
    model,
    blurry: torch.Tensor,
    *,
    steps: int,
    lr: float = PAPER_LR,
    callback: Callable[[int, float, torch.Tensor], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_first: Callable[[torch.Tensor], None] | None = None,
) -> Adaptation:
    """Algorithm 1 on one image: ``steps`` Adam updates of a copy of ``model.deblur`` on Eq. 7, then matching.

    ``callback(step, loss, image)`` runs after every completed update (step = 1, 2, ...; image = the current
    histogram-matched output, 1 x 3 x H x W in [0, 1]). ``on_first(image)`` runs once, with the un-adapted
    output (step 0, the same tensor as ``Adaptation.first``), as soon as it exists: a caller that shows step 0
    needs no forward pass of its own. ``cancel()`` is polled before every update; when it
    returns True the adaptation stops and returns what it has, with ``cancelled`` set. ``model`` itself is
    never modified. Gradients are switched on inside, so callers may hold ``torch.no_grad()`` or
    ``torch.inference_mode()`` around it.
    """
    _check(model, blurry, steps, lr)
    with torch.inference_mode(False), torch.enable_grad():
        device = next(model.deblur.parameters()).device
        # A copy made here is an ordinary tensor even when the caller's was made in inference mode.
        blurry = blurry.to(device=device, dtype=torch.float32).clone()
        return _adapt(model, blurry, steps, lr, callback, cancel, on_first)


def _adapt(model, blurry, steps, lr, callback, cancel, on_first) -> Adaptation:
    height, width = blurry.shape[-2:]
    multiple = model.pad_multiple
    multiple_h, multiple_w = (multiple, multiple) if isinstance(multiple, int) else multiple
    padded = pad_to_multiple(blurry, multiple_h, multiple_w)

    deblur = copy.deepcopy(model.deblur).eval()
    parameters = list(deblur.parameters())
    for parameter in parameters:
        parameter.requires_grad_(True)
        parameter.grad = None
    reblur = model.reblur

    def restore(track_gradients: bool) -> torch.Tensor:
        with torch.set_grad_enabled(track_gradients):
            return deblur(padded)[..., :height, :width]

    latent = restore(steps > 0)  # L^0: Algorithm 1, line 4
    first = latent.detach().clamp(0.0, 1.0)
    result = Adaptation(image=first, losses=[], first=first, steps_done=0)
    if on_first is not None:
        on_first(first)
    if steps == 0:
        return result

    optimizer = torch.optim.Adam(parameters, lr=lr)
    current = latent.detach()  # the last finite output, unclamped
    matched = None  # current, histogram-matched, once computed
    reblurred = reblur(latent)  # M_R(L^0)
    for step in range(steps):
        if cancel is not None and cancel():
            result.cancelled = True
            break
        target = latent.detach()  # L_*^i: the same image, no gradient through it
        loss = F.l1_loss(reblurred, target)  # Eq. 7
        if not torch.isfinite(loss):
            result.diverged = True
            result.message = (
                f"the loss became {loss.item()} at step {step + 1}: lr={lr:g} is too large"
                if step > 0
                else f"the loss is {loss.item()} on the un-adapted output: M_R does not give a finite image"
            )
            break
        gradients = torch.autograd.grad(loss, parameters)
        for parameter, gradient in zip(parameters, gradients):
            parameter.grad = gradient
        optimizer.step()
        more = step + 1 < steps
        latent = restore(more)  # the output after this step, and the next step's L
        with torch.set_grad_enabled(more):
            reblurred = reblur(latent)  # the next step's M_R(L)
        if not (torch.isfinite(latent).all() and torch.isfinite(reblurred).all()):
            result.diverged = True
            result.message = f"the output became non-finite at step {step + 1}: lr={lr:g} is too large"
            break
        if latent.abs().max() > BLOWUP:
            result.diverged = True
            result.message = (
                f"the output blew up to {latent.abs().max().item():.3g} at step {step + 1} "
                f"(an image lies in [0, 1]): lr={lr:g} is too large"
            )
            break
        current, matched = latent.detach(), None
        result.losses.append(loss.item())
        result.losses_after.append(F.l1_loss(reblurred.detach(), target).item())
        result.steps_done = step + 1
        if callback is not None:
            matched = match_to(current, first)
            callback(result.steps_done, result.losses[-1], matched)

    if result.steps_done > 0:
        result.image = matched if matched is not None else match_to(current, first)  # Algorithm 1, line 10
    return result
