"""A/B builds: two model variants shipped side by side (``app.ab_variants``, ``app.ab_split``).

Variant "a" (the first name) is installed in ``model/`` and described by metadata.json's ``model``
as in any build, so tools that know nothing of A/B keep working. Variant "b" is installed in
``model-b/``. metadata.json's ``ab`` section lists both::

    {"split": 0.5, "variants": [
        {"id": "a", "name": "float32", "url": "model/model.json", "sha256": ..., "bytes": ...,
         "weight_bytes": ..., "golden": [[...], ...], "predictions": {...}},
        {"id": "b", "name": "uint8", "url": "model-b/model.json", ...}]}

``golden`` contains each variant's Python outputs (``builder.graph_model``) for metadata.json's golden
inputs, so ``webml test`` checks each variant against itself. ``predictions`` is the variant's
prediction distribution on the test set, which its drift monitoring compares with. The page
assigns each client a variant from a hash of its stable random id (``web/src/ab.js``); both
variants are precached like every other file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import site as site_module, stats
from .optimize import Variant
from .spec import Spec
from .train import Split

IDS = ("a", "b")
MODEL_DIRS = {"a": "model", "b": "model-b"}


def shipped_variants(spec: Spec, candidates: list[Variant], chosen: Variant) -> list[tuple[str, Variant]]:
    """Return [(id, variant)] to install: the selected variant alone, or the two A/B variants."""
    if not spec.app.ab_variants:
        return [("a", chosen)]
    by_name = {variant.name: variant for variant in candidates}
    return [(variant_id, by_name[name]) for variant_id, name in zip(IDS, spec.app.ab_variants)]


def ab_metadata(spec: Spec, split: Split, shipped: list[tuple[str, Variant, dict[str, Any], Any]]) -> dict[str, Any]:
    """Describe the A/B variants for metadata.json.

    ``shipped`` contains (id, variant, model info as in metadata.json's ``model``, Python reference).
    """
    inputs = site_module.golden_inputs(spec, split)
    encoded = site_module.encode_raw(split, split.preprocessing, inputs)
    variants = []
    for variant_id, variant, info, reference in shipped:
        outputs = np.asarray(reference(encoded), dtype=np.float64)
        test_outputs = reference(split.x_test)
        variants.append({
            "id": variant_id,
            "name": variant.name,
            "url": info["url"],
            "sha256": info["sha256"],
            "bytes": info["bytes"],
            "weight_bytes": info["weight_bytes"],
            "golden": [[float(v) for v in row.reshape(-1)] for row in outputs],
            "predictions": stats.prediction_statistics(split.dataset.task, test_outputs, list(split.dataset.class_names),
                                                       spec.task.threshold),
        })
    return {"split": spec.app.ab_split, "variants": variants}


def ab_record(spec: Spec, shipped: list[tuple[str, Variant]]) -> dict[str, Any]:
    """Describe for the report which variants an A/B build ships, and to what share of clients."""
    shares = {"a": 1 - spec.app.ab_split, "b": spec.app.ab_split}
    return {
        "split": spec.app.ab_split,
        "variants": [{"id": variant_id, "name": variant.name, "share": shares[variant_id],
                      "within_budget": variant.within_budget, "directory": MODEL_DIRS[variant_id]}
                     for variant_id, variant in shipped],
    }


def budget_warnings(shipped: list[tuple[str, Variant]], metric: str) -> list[str]:
    """Warn about each A/B variant whose measured metric is outside the budget that selection uses."""
    return [f"A/B variant {variant_id} ({variant.name}) is outside the metric budget: {metric} "
            f"{variant.browser_metric:.4f} in the browser; clients assigned to it get a worse model than selection allows"
            for variant_id, variant in shipped if variant.within_budget is False]
