"""MODEL_CARD.md tells the truth about the shipped weights: it is rendered from their metrics."""
from __future__ import annotations

import json

from facepose.weights import WEIGHTS_DIR, load_fpnet
from training.model_card import REPO, render


def test_model_card_is_rendered_from_the_shipped_metrics():
    metrics = json.loads((WEIGHTS_DIR / "metrics.json").read_text())
    assert metrics["fpnet_bytes"] == (WEIGHTS_DIR / "fpnet.safetensors").stat().st_size  # the metrics of these weights
    assert (REPO / "MODEL_CARD.md").read_text() == render(metrics, metrics.get("recipe", {})), \
        "MODEL_CARD.md is stale: run python -m training.model_card"


def test_recipe_describes_the_shipped_network():
    recipe = json.loads((WEIGHTS_DIR / "metrics.json").read_text())["recipe"]
    net, pose = load_fpnet()
    assert pose
    assert str(net.pose_hidden) == recipe.get("pose_hidden", "0")
    assert str(net.pose_channels) == recipe.get("pose_channels", "0")
