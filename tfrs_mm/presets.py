"""Named config presets: plain data layered on the dataclass defaults."""

from __future__ import annotations

from typing import Any

from tfrs_mm.config import Config, from_dict

# The ranker as `demo` and `movielens` train it: from held-out lists (every negative from the user's
# retrieval top-K), knowing a user by their history, on retrieval's frozen tokens, with item-to-item
# (EASE) evidence fitted on those lists; its epoch is chosen on held-out users.
HELD_OUT_RANKER: dict[str, Any] = {
    "ranking_lists": "valid",
    "ranking_negatives": 20,
    "hard_negative_fraction": 1.0,
    "ranker_user_embedding": False,
    "ranker_tokens": "retrieval",
    "ranker_item_item": True,
}

PRESETS: dict[str, dict[str, Any]] = {
    # The dataclass defaults: a mid-sized catalog.
    "default": {},
    # Tiny and fast: the sample catalog end to end in minutes on 2 CPU cores.
    # The ranker is `HELD_OUT_RANKER`, as in `movielens` (on the sample catalog: NDCG@10 +24 % over
    # retrieval's order; train lists without evidence gave -9 %).
    "demo": {
        "data": {"history_length": 10, "text_max_tokens": 64, "min_user_interactions": 3},
        "model": {
            "embedding_dim": 32,
            "id_embedding_dim": 16,
            "ranker_dim": 32,
            "ranker_mlp": [64],
            **HELD_OUT_RANKER,
        },
        "train": {"batch_size": 128, "epochs": 3, "checkpoint_every_steps": 50},
        "index": {"k": 50, "tune_queries": 200},
        "export": {"retrieval_k": 50},
    },
    # MovieLens with posters and plot text; RecBole's protocol keeps ratings >= 3. Its splits are random
    # per user (ml-1m here has no timestamps), so training histories are sampled from the train set, and
    # the epoch with the best valid Recall@10 is kept; the learning rate halves every epoch after the third.
    # A popularity prior chosen on valid puts back the popularity that logQ correction takes out. The ranker
    # is `HELD_OUT_RANKER` (epoch 0 of its selection: retrieval's order plus the fitted evidence).
    "movielens": {
        "data": {"rating_threshold": 3.0, "history_length": 50, "text_max_tokens": 128},
        "model": {
            "modalities": ["text", "image"],
            "embedding_dim": 64,
            "popularity_prior": True,
            **HELD_OUT_RANKER,
        },
        "train": {
            "batch_size": 1024,
            "epochs": 20,
            "learning_rate": 2e-3,
            "history_source": "train_set",
            "history_sample_length": 50,
            "early_stopping_patience": 2,
            "lr_decay_rate": 0.5,
            "lr_decay_after_epochs": 3,
        },
    },
    # Last.fm-2K ships text and audio embeddings and no images; feedback is implicit.
    "lastfm": {
        "data": {"min_user_interactions": 3, "history_length": 30},
        "model": {"modalities": ["text", "audio"], "embedding_dim": 64},
        "train": {"batch_size": 512, "epochs": 30},
    },
}


def get_preset(name: str) -> Config:
    """The `Config` for a named preset.

    Raises:
        ValueError: if `name` is not a preset.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
    return from_dict({"preset": name, **PRESETS[name]})
