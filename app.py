"""Gradio front end: build_demo() and thin handlers; every computation is a core call.

A minimal page until the comparison app lands: upload a blurry photo, pick one of the five papers'
networks, see its output. `python app.py` honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.
"""

from __future__ import annotations

import gradio as gr

from core.inference import restore
from core.registry import get_card, list_models


def describe(name: str) -> str:
    card = get_card(name)
    return f"**{card.paper}** ({card.authors}, {card.venue} {card.year}): {card.summary} {card.params / 1e6:.2f}M parameters."


def run(image, name: str):
    if image is None:
        raise gr.Error("Upload a blurry photo first.")
    result = restore(image, name)
    status = f"{name}: {result.seconds:.2f} s."
    if not result.trained:
        status += " No trained weights are shipped for this model yet: this is its untrained initialisation."
    return result.image, status


def build_demo() -> gr.Blocks:
    names = list_models()
    with gr.Blocks(title="Deblurring workbench") as demo:
        gr.Markdown("# Deblurring workbench\nFive published deblurring networks on the same image.")
        with gr.Row():
            source = gr.Image(label="Blurry photo", type="numpy", image_mode="RGB", format="png")
            output = gr.Image(label="Restored", type="numpy", format="png", interactive=False)
        model = gr.Dropdown(names, value=names[0], label="Model")
        card = gr.Markdown(describe(names[0]))
        status = gr.Markdown()
        button = gr.Button("Deblur", variant="primary")
        model.change(describe, model, card, api_name=False)
        button.click(run, [source, model], [output, status], api_name="deblur")
    return demo


if __name__ == "__main__":
    build_demo().queue(default_concurrency_limit=1).launch()
