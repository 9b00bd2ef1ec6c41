"""Chooses the popularity prior's weight on the valid split, after training.

For each alpha in `model.popularity_prior_alphas` the retrieval model ranks the
whole catalog for every valid user (train items masked, as the test evaluation
does) with scores q·c / temperature + alpha · log(1 + train count), and the
alpha with the best valid NDCG@K is kept (ties go to the smaller alpha; 0 is
always a candidate, so the prior never costs valid NDCG). The test split is
never looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def tune_popularity_prior(
    model,
    data,
    data_dir: str,
    manifest,
    alphas: Sequence[float],
    k: int = 10,
    queries: str = "example",
) -> dict:
    """Sets `model.popularity_prior`'s weight to the best alpha × temperature; returns what it measured.

    Args:
        model: A trained `RetrievalModel` with a popularity prior.
        data: Its `RetrievalData` (catalog order and train counts).
        data_dir: The dataset directory (its valid split is read here).
        manifest: The dataset's manifest.
        alphas: Candidate prior weights, in units of the logits (scores / temperature).
        k: The cut-off of the NDCG that chooses.
        queries: The valid users' query histories (`retrieval_eval.load_eval_split`).

    Returns:
        `{"alpha", "weight", "chosen_on", "valid": {alpha: {"ndcg@k", "recall@k"}}}`; alpha 0 and
        `"chosen_on": "nothing (no valid users)"` when the valid split is empty.
    """
    from tfrs_mm.evaluation import retrieval_eval

    prior = model.popularity_prior
    if prior is None:
        raise ValueError("the model has no popularity prior (model.popularity_prior is off)")
    temperature = model.config.temperature
    catalog = list(data.table.item_ids)
    truth = retrieval_eval.load_eval_split(data_dir, manifest, catalog, "valid", queries)
    if not truth.users:
        logger.warning("no valid users to choose the popularity prior on: it stays at 0")
        prior.prior_weight.assign(0.0)
        return {"alpha": 0.0, "weight": 0.0, "chosen_on": "nothing (no valid users)", "valid": {}}
    measured = {}
    for alpha in sorted({float(a) for a in (0.0, *alphas)}):
        prior.prior_weight.assign(alpha * temperature)
        metrics = retrieval_eval.evaluate_model(model, catalog, truth, data.frequencies, ks=(k,))
        measured[alpha] = {f"ndcg@{k}": metrics[f"ndcg@{k}"], f"recall@{k}": metrics[f"recall@{k}"]}
    best = max(measured, key=lambda a: (measured[a][f"ndcg@{k}"], -a))
    prior.prior_weight.assign(best * temperature)
    logger.info(
        "popularity prior: alpha %.3g (valid NDCG@%d %.4f; %.4f without it)",
        best,
        k,
        measured[best][f"ndcg@{k}"],
        measured[0.0][f"ndcg@{k}"],
    )
    return {
        "alpha": best,
        "weight": best * temperature,
        "chosen_on": f"valid NDCG@{k}",
        "valid": {str(a): m for a, m in measured.items()},
    }
