"""MODEL_CARD.md tells the truth about the shipped weights: it is rendered from their metrics."""
from __future__ import annotations

import json

from facepose.weights import WEIGHTS_DIR, load_last_stage
from training.model_card import REPO, render
from training.recipes import RECIPES


def test_model_card_is_rendered_from_the_shipped_metrics():
    metrics = json.loads((WEIGHTS_DIR / "metrics.json").read_text())
    assert metrics["fpnet_bytes"] == (WEIGHTS_DIR / "fpnet.safetensors").stat().st_size  # the metrics of these weights
    assert (REPO / "MODEL_CARD.md").read_text() == render(metrics, metrics.get("recipe", {})), \
        "MODEL_CARD.md is stale: run python -m training.model_card"


def test_recipe_describes_the_shipped_network():
    """The card's recipe is the shipped recipe of training/recipes.py, and it builds the shipped network."""
    recipe = json.loads((WEIGHTS_DIR / "metrics.json").read_text())["recipe"]
    shipped = RECIPES[recipe["name"]].to_dict()
    assert {k: v for k, v in recipe.items() if k in shipped and k != "summary"} == \
        {k: v for k, v in shipped.items() if k != "summary"}
    net, pose = load_last_stage()
    assert pose and net.arch == recipe["arch"] and net.sizes() == recipe["sizes"]
