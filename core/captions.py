"""What each model's maps show, in its paper's own terms: captions from the cards, and the notes the app shows.

A caption's home is its model's card (``ModelCard.map_notes``, in the paper's file in ``core/models/``), keyed by
the map's name or, for a numbered family of maps ("prior 1", "prior 2", "prior 3"), by the family's stem ("prior"),
so that the family shares one caption.
"""

from __future__ import annotations

import re

from core.registry import get_card

NUMBERED = re.compile(r"(.*\S) (\d+)")


def map_caption(model: str, map_name: str) -> str:
    """The caption of one map from its card: its own, else its family's; "" when the card has neither."""
    notes = get_card(model).map_notes
    if map_name in notes:
        return notes[map_name]
    match = NUMBERED.fullmatch(map_name)
    return notes.get(match[1], "") if match else ""


def family(names: list[str]) -> str:
    """Map names sharing one caption, as a person would write them: "prior 1-3", "SAT scale 1-3, SAT shift 1-3"."""
    numbered: dict[str, list[int]] = {}
    plain = []
    for name in names:
        match = NUMBERED.fullmatch(name)
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
