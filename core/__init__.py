"""Deblurring workbench library: five papers' networks, inference, metrics and diagnostics.

Nothing here imports gradio; importing this package does no work (no weights, no downloads).
"""

from core.registry import ModelCard, create_model, get_card, list_models

__all__ = ["ModelCard", "create_model", "get_card", "list_models"]
