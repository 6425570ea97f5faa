"""What each model's maps show, in its paper's own terms, and which figure they mirror: {(model, map name): caption}.

A caption's home is its model's card (``ModelCard.map_notes``, in the paper's file in ``core/models/``); the
captions of the first five papers are kept here until they move there, one paper at a time. ``map_caption``
reads the card first, so a sixth paper that declares its own never needs this file. Maps of one family (a
numbered series such as "prior 1-3") share one caption.
"""

from __future__ import annotations

import re

from core.registry import get_card

SP = {
    "prior": "the learned semantic priors f_pri^i at strides 1, 2, 4 (channel means, colour-mapped as the paper "
             "shows them in Fig. 6-7)",
    "CLC attention": "f_att^i of the Cross-Level Connection that pulls the deeper prior into the shallower one "
                     "(Eq. 3, Fig. 2a)",
    "MLA prior": "the aggregated priors M^i (Eq. 5, Fig. 2b)",
    "SAT": "mu and sigma with which the Semantic Attention Transformation modulates each decoder skip, "
           "mu (f_de + f_en) + sigma (Eq. 6, Fig. 2c)",
}
REBLUR = {
    "reblurred": "M_R(L), the reblurring module applied to the deblurred output L (Sec. 3, Fig. 2)",
    "residual blur": "|M_R(L) - L|, where M_R still finds blur to amplify: clean images are hard to reblur, so a "
                     "sharp output leaves it near zero. The remaining-blur kernel at a point you pick (Compare tab) "
                     "is the paper's Fig. 1; the Adapt tab runs its test-time adaptation (Algorithm 1)",
}
FCN = {
    "query map 1": "the sigmoid query map of the global feature catcher's query-key mechanism (Sec. 3.2, Fig. 3b), "
                   "values in 0..1 that 'represent the importance of each pixel region for deblurring'",
    "stage output": "the images each stage of the multi-patch network restores, supervised by Eq. 1 (Fig. 2)",
    "trust ratios": "r_s, the trainable weights of the stage losses in Eq. 1 (Sec. 3.6)",
}
LMFN = {
    "ALFM attention": "the NC x NC channel-to-channel attention softmax(F F^T) across the four RFDB outputs "
                      "(4 x 50 channels) of the attention layer fusion module (Eq. 1-2, Fig. 2)",
    "ACFM attention": "the sigmoid gate W of the pseudo-3-D attention channel fusion module on the last RFDB "
                      "(Eq. 3, Fig. 3), channel mean",
}
GRADIENTNET = {
    "Sobel of input": "the Sobel gradient magnitude of the blurry input, the paper's baseline edge detector "
                      "(Fig. 4(b))",
    "RGCL": "the responses of the 1x3 and 3x1 gradient convolutions k_1x3 * U and k_3x1 * U of the recurrent "
            "gradient convolutional layer (Eq. 7, Fig. 3) in MBRB k, k = 1..10, at 1/4 resolution: the learned "
            "counterpart of Fig. 4(c)-(e)",
}

MAP_CAPTIONS: dict[tuple[str, str], str] = {}
for k in (1, 2, 3):
    MAP_CAPTIONS |= {("sp-unet", f"prior {k}"): SP["prior"], ("sp-unet", f"MLA prior {k}"): SP["MLA prior"],
                     ("sp-unet", f"SAT scale {k}"): SP["SAT"], ("sp-unet", f"SAT shift {k}"): SP["SAT"],
                     ("fcn", f"stage {k} output"): FCN["stage output"]}
for k in (1, 2):
    MAP_CAPTIONS[("sp-unet", f"CLC attention {k}")] = SP["CLC attention"]
for k in range(1, 11):
    MAP_CAPTIONS |= {("gradientnet", f"RGCL horizontal {k}"): GRADIENTNET["RGCL"],
                     ("gradientnet", f"RGCL vertical {k}"): GRADIENTNET["RGCL"]}
for variant in ("reblur-n1", "reblur-n2"):
    MAP_CAPTIONS |= {(variant, name): caption for name, caption in REBLUR.items()}
MAP_CAPTIONS |= {("fcn", name): FCN[name] for name in ("query map 1", "trust ratios")}
MAP_CAPTIONS |= {("lmfn", name): caption for name, caption in LMFN.items()}
MAP_CAPTIONS[("gradientnet", "Sobel of input")] = GRADIENTNET["Sobel of input"]


def map_caption(model: str, map_name: str) -> str:
    """The caption of one map: its card's ``map_notes`` first, then this module's; "" when neither has one."""
    return get_card(model).map_notes.get(map_name) or MAP_CAPTIONS.get((model, map_name), "")


def family(names: list[str]) -> str:
    """Map names sharing one caption, as a person would write them: "prior 1-3", "SAT scale 1-3, SAT shift 1-3"."""
    numbered: dict[str, list[int]] = {}
    plain = []
    for name in names:
        match = re.fullmatch(r"(.*\S) (\d+)", name)
        if match:
            numbered.setdefault(match[1], []).append(int(match[2]))
        else:
            plain.append(name)
    parts = plain + [f"{stem} {min(k)}-{max(k)}" if len(k) > 1 else f"{stem} {k[0]}" for stem, k in numbered.items()]
    return ", ".join(parts)


def maps_note(model: str) -> str:
    """Every declared map of a model, one line per caption: "**prior 1-3**: the learned semantic priors ...".
    Maps without a caption are named in a last line."""
    groups: dict[str, list[str]] = {}
    for name in get_card(model).maps:
        groups.setdefault(map_caption(model, name), []).append(name)
    uncaptioned = groups.pop("", [])
    lines = [f"**{family(names)}**: {caption}." for caption, names in groups.items()]
    if uncaptioned:
        lines.append("Further maps this model declares on its card: " + ", ".join(uncaptioned) + ".")
    return " ".join(lines)
