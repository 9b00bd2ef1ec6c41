"""Warm starts across changed vocabularies: shared ids keep their rows, new ids start fresh."""

import dataclasses

import numpy as np
import pytest

from tfrs_mm import config as config_lib
from tfrs_mm.models import build_retrieval_model, random_item_table
from tfrs_mm.training.warm_start import FINAL_CHECKPOINT, build_towers, save_towers, warm_start

DIMS = {"text": 6, "image": 4}
MODEL = config_lib.ModelConfig(embedding_dim=8, id_embedding_dim=4, modalities=("text", "image"))


def _model(items, users, seed, model_config=MODEL):
    table = random_item_table(len(items), DIMS, seed=seed, item_ids=items)
    model = build_retrieval_model(table, items, users, model_config)
    build_towers(model)
    return model, table


def _save_run(model, workdir, model_config=MODEL):
    config = dataclasses.replace(config_lib.Config(), model=model_config)
    config_lib.save_config(config, str(workdir))
    model.save_weights(str(workdir / FINAL_CHECKPOINT))
    save_towers(model, str(workdir))


def _row(embedding_layer, vocabulary, key, oov=1):
    return embedding_layer.embeddings.numpy()[oov + vocabulary.index(key)]


def test_shared_ids_keep_rows_new_ids_start_fresh_content_comes_from_new_data(tmp_path):
    before, _ = _model(["a", "b", "c"], ["u1", "u2"], seed=1)
    _save_run(before, tmp_path)
    after, new_table = _model(["b", "c", "d"], ["u2", "u3"], seed=2)
    fresh_d = _row(after.item_tower.id_embedding, ["b", "c", "d"], "d")
    counts = warm_start(after, str(tmp_path))
    assert counts["remapped"] == 2 and counts["copied"] > 0 and counts["from_new_data"] == 4

    items_before, items_after = before.item_tower, after.item_tower
    for key in ("b", "c"):
        np.testing.assert_array_equal(
            _row(items_after.id_embedding, ["b", "c", "d"], key),
            _row(items_before.id_embedding, ["a", "b", "c"], key),
        )
    np.testing.assert_array_equal(_row(items_after.id_embedding, ["b", "c", "d"], "d"), fresh_d)
    np.testing.assert_array_equal(
        _row(after.query_tower.user_embedding, ["u2", "u3"], "u2"),
        _row(before.query_tower.user_embedding, ["u1", "u2"], "u2"),
    )
    np.testing.assert_array_equal(
        items_after.id_projection.kernel.numpy(), items_before.id_projection.kernel.numpy()
    )
    np.testing.assert_array_equal(items_after.content["text"].numpy()[1:], new_table.embeddings["text"])


def test_a_different_architecture_is_refused_with_a_clear_error(tmp_path):
    before, _ = _model(["a", "b"], ["u1"], seed=1)
    _save_run(before, tmp_path)
    other = dataclasses.replace(MODEL, modalities=("text",))
    after, _ = _model(["a", "b"], ["u1"], seed=1, model_config=other)
    with pytest.raises(ValueError, match="architectures differ"):
        warm_start(after, str(tmp_path))


def test_a_workdir_without_towers_is_refused(tmp_path):
    after, _ = _model(["a"], ["u1"], seed=1)
    with pytest.raises(FileNotFoundError, match=r"towers\.json"):
        warm_start(after, str(tmp_path))
