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
- Drift: an adaptation that ends finite but further than ``DRIFT_DB`` (30 dB PSNR) from step 0's output is flagged
  (``drifted``, with the distance in ``message``); the image is returned as computed. Not in the paper: MAXIM at the
  paper's rate lost 8.7 dB against the sharp frames on 128 px ``gopro_dev`` crops in 20 steps without a step
  diverging (README); the 30 dB line was chosen from those rows, not tuned on a set of its own.
- Cost: each step is one forward and one backward pass of M_D and M_R (the forward after an update is
  the next step's forward), plus one forward of each at the end, and a histogram matching per step whose
  image is looked at (``Step.image`` is computed on first use).

Any network, not only Reblur's M_D: Eq. 7 needs only the network's output and a trained M_R, so ``critic`` lends
one (the app and the CLI lend the shipped Reblur's) to a model that has none. Its whole network is then the
module adapted (a deep copy, in eval mode: normalisation layers use their running statistics, as at inference),
through its own ``_restore`` on the padded image; the critic stays shared and untouched, as M_R does above.
A network whose adaptation blows up (normalisation, or a learning rate too large for it) ends with ``diverged``
and its message, never NaNs (the same rule as above). This generalisation is the project's, not the paper's.

Two ways to run it: ``adapt_steps`` is a generator (``for step in adapt_steps(...)``: one ``Step`` as soon as
step 0 and each update are done, then the ``Adaptation``; closing it early cancels before the next update, so a
caller that streams steps needs no thread), and ``adapt`` runs it to the end for a caller that wants the result.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from skimage.exposure import match_histograms

from core.metrics import psnr
from core.models.base import MapRecorder, pad_to_multiple

PAPER_LR = 3e-6  # Algorithm 1, line 2
BLOWUP = 1e3  # an output this far outside [0, 1] has diverged, even while float32 still holds it
DRIFT_DB = 30.0  # an adapted output further than this (PSNR against step 0) from the model's own is flagged


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
    drifted: bool = False  # finite, but far from step 0 (``DRIFT_DB``): ``message`` says how far


def _array(image: torch.Tensor) -> np.ndarray:
    """A 1 x 3 x H x W image as H x W x 3 float64 on the CPU (what ``core.metrics`` and scikit-image take)."""
    return image.detach()[0].permute(1, 2, 0).cpu().double().numpy()


def match_to(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram matching of a 1 x 3 x H x W image onto a reference of the same shape, clamped."""
    matched = match_histograms(_array(image), _array(reference), channel_axis=-1)
    result = torch.from_numpy(np.ascontiguousarray(matched)).permute(2, 0, 1).unsqueeze(0)
    return result.to(device=reference.device, dtype=reference.dtype).clamp(0.0, 1.0)


def has_reblur_module(model) -> bool:
    """Whether the model carries its own M_D and M_R (Reblur's networks)."""
    return all(isinstance(getattr(model, name, None), torch.nn.Module) for name in ("deblur", "reblur"))


def _check(model, blurry: torch.Tensor, steps: int, lr: float, critic) -> None:
    if critic is None and not has_reblur_module(model):
        raise TypeError(
            f"test-time adaptation needs a reblurring module M_R: {type(model).__name__} has none of its own "
            "(.deblur and .reblur), so pass critic= (e.g. a trained Reblur model's .reblur)"
        )
    if critic is not None and not isinstance(critic, torch.nn.Module):
        raise TypeError(f"critic must be a torch module (an M_R), got {type(critic).__name__}")
    if blurry.dim() != 4 or blurry.shape[0] != 1 or blurry.shape[1] != 3:
        raise ValueError(f"expected a 1 x 3 x H x W image, got shape {tuple(blurry.shape)}")
    if not torch.isfinite(blurry).all() or blurry.min() < 0 or blurry.max() > 1:
        raise ValueError("the blurry image must hold finite values in [0, 1]")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"the learning rate must be a positive number, got {lr}")


class Step:
    """One step of an adaptation as it happens: step 0 is the un-adapted output, step i > 0 the output after the
    i-th update. ``loss`` (NaN at step 0) and ``loss_after`` are ``Adaptation.losses`` and ``losses_after`` of that
    update. ``image`` (1 x 3 x H x W in [0, 1]) is the output histogram-matched to step 0, computed on first use."""

    def __init__(self, step: int, loss: float, loss_after: float, latent: torch.Tensor, first: torch.Tensor) -> None:
        self.step, self.loss, self.loss_after = step, loss, loss_after
        self._latent, self._first = latent, first

    @functools.cached_property
    def image(self) -> torch.Tensor:
        return self._first if self.step == 0 else match_to(self._latent, self._first)


@contextmanager
def _gradients():
    """Gradients on, whatever the caller holds (``torch.no_grad``, ``torch.inference_mode``). Entered around each
    piece of work between two yields, never across one: grad mode is per thread, and a generator may be resumed
    from another thread than the one that started it."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class _Adapter:
    """The state of one adaptation between its steps: the copy of M_D, its optimiser and the current output."""

    def __init__(self, model, blurry: torch.Tensor, steps: int, lr: float, critic=None) -> None:
        own = has_reblur_module(model)
        network = model.deblur if own else model
        device = next(network.parameters()).device
        # A copy made here is an ordinary tensor even when the caller's was made in inference mode.
        blurry = blurry.to(device=device, dtype=torch.float32).clone()
        self.height, self.width = blurry.shape[-2:]
        multiple = model.pad_multiple
        multiple_h, multiple_w = (multiple, multiple) if isinstance(multiple, int) else multiple
        self.padded = pad_to_multiple(blurry, multiple_h, multiple_w)
        self.steps, self.lr = steps, lr
        self.deblur = copy.deepcopy(network).eval()
        self.forward = self.deblur if own else functools.partial(self.deblur._restore, maps=MapRecorder(False))
        self.parameters = list(self.deblur.parameters())
        for parameter in self.parameters:
            parameter.requires_grad_(True)
            parameter.grad = None
        self.reblur = critic if critic is not None else model.reblur
        self.latent = self.restore(steps > 0)  # L^0: Algorithm 1, line 4
        self.first = self.latent.detach().clamp(0.0, 1.0)
        self.current = self.latent.detach()  # the last finite output, unclamped
        if steps > 0:
            self.optimizer = torch.optim.Adam(self.parameters, lr=lr)
            self.reblurred = self.reblur(self.latent)  # M_R(L^0)

    def restore(self, track_gradients: bool) -> torch.Tensor:
        with torch.set_grad_enabled(track_gradients):
            return self.forward(self.padded)[..., : self.height, : self.width]

    def update(self, step: int) -> tuple[float, float] | str:
        """Update ``step`` (0-based): (Eq. 7 before it, its objective after it), or why it diverged."""
        target = self.latent.detach()  # L_*^i: the same image, no gradient through it
        loss = F.l1_loss(self.reblurred, target)  # Eq. 7
        lr = self.lr
        if not torch.isfinite(loss):
            if step > 0:
                return f"the loss became {loss.item()} at step {step + 1}: lr={lr:g} is too large"
            return f"the loss is {loss.item()} on the un-adapted output: M_R does not give a finite image"
        # allow_unused: a network may hold parameters its inference forward does not use (FCN's trust ratios
        # weigh only its training loss); they get no gradient, and Adam leaves a parameter without one alone.
        gradients = torch.autograd.grad(loss, self.parameters, allow_unused=True)
        for parameter, gradient in zip(self.parameters, gradients):
            parameter.grad = gradient
        self.optimizer.step()
        more = step + 1 < self.steps
        self.latent = self.restore(more)  # the output after this step, and the next step's L
        with torch.set_grad_enabled(more):
            self.reblurred = self.reblur(self.latent)  # the next step's M_R(L)
        if not (torch.isfinite(self.latent).all() and torch.isfinite(self.reblurred).all()):
            return f"the output became non-finite at step {step + 1}: lr={lr:g} is too large"
        if self.latent.abs().max() > BLOWUP:
            return (f"the output blew up to {self.latent.abs().max().item():.3g} at step {step + 1} "
                    f"(an image lies in [0, 1]): lr={lr:g} is too large")
        self.current = self.latent.detach()
        return loss.item(), F.l1_loss(self.reblurred.detach(), target).item()


def adapt_steps(
    model, blurry: torch.Tensor, *, steps: int, lr: float = PAPER_LR, critic: torch.nn.Module | None = None
) -> Iterator[Step | Adaptation]:
    """Algorithm 1 on one image, step by step: yields ``Step(0)`` (the un-adapted output) as soon as it exists,
    a ``Step`` after every completed update, and last the ``Adaptation`` (histogram-matched output, losses, and
    whether it diverged). Closing the generator before the end (``close()``, or leaving a ``for`` loop over
    ``contextlib.closing(adapt_steps(...))``) cancels: no further update runs. ``model`` itself is never
    modified. Gradients are switched on inside, so callers may hold ``torch.no_grad()`` or
    ``torch.inference_mode()`` around it. ``critic``: the M_R of Eq. 7 for a model without its own (then the
    whole model is adapted); a Reblur model uses its own M_R unless one is given.
    """
    _check(model, blurry, steps, lr, critic)
    with _gradients():
        adapter = _Adapter(model, blurry, steps, lr, critic)
    first = adapter.first
    result = Adaptation(image=first, losses=[], first=first, steps_done=0)
    yield Step(0, math.nan, math.nan, first, first)
    last = None
    for step in range(steps):
        with _gradients():
            outcome = adapter.update(step)
        if isinstance(outcome, str):
            result.diverged, result.message = True, outcome
            break
        result.losses.append(outcome[0])
        result.losses_after.append(outcome[1])
        result.steps_done = step + 1
        last = Step(step + 1, *outcome, adapter.current, first)
        yield last
    if last is not None:
        result.image = last.image  # Algorithm 1, line 10 (computed once: the step's own matching if it was shown)
        distance = psnr(_array(result.image), _array(first))
        if distance < DRIFT_DB and not result.diverged:
            # Finite but far: MAXIM at the paper's rate lost 8.7 dB in 20 steps with no step diverging (README).
            result.drifted = True
            result.message = (f"the adapted output is {distance:.1f} dB PSNR from the model's own (step 0): a change "
                              "this large is likely damage, not deblurring; try fewer steps or a smaller learning rate")
    yield result


def adapt(
    model,
    blurry: torch.Tensor,
    *,
    steps: int,
    lr: float = PAPER_LR,
    callback: Callable[[int, float, torch.Tensor], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_first: Callable[[torch.Tensor], None] | None = None,
    critic: torch.nn.Module | None = None,
) -> Adaptation:
    """``adapt_steps`` run to its end: ``steps`` Adam updates of a copy of ``model.deblur`` on Eq. 7, then matching.

    ``callback(step, loss, image)`` runs after every completed update (step = 1, 2, ...; image = the current
    histogram-matched output, 1 x 3 x H x W in [0, 1]). ``on_first(image)`` runs once, with the un-adapted
    output (step 0, the same tensor as ``Adaptation.first``), as soon as it exists. ``cancel()`` is polled before
    every update; when it returns True the adaptation stops and returns what it has, with ``cancelled`` set.
    """
    done: list[Step] = []
    with closing(adapt_steps(model, blurry, steps=steps, lr=lr, critic=critic)) as events:
        for event in events:
            if isinstance(event, Adaptation):
                return event
            if event.step == 0:
                first = event.image
                if on_first is not None:
                    on_first(first)
            else:
                done.append(event)
                if callback is not None:
                    callback(event.step, event.loss, event.image)
            if event.step < steps and cancel is not None and cancel():
                break
    return Adaptation(image=done[-1].image if done else first, losses=[s.loss for s in done], first=first,
                      steps_done=len(done), cancelled=True, losses_after=[s.loss_after for s in done])
