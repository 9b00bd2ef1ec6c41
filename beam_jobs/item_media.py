"""Reading and decoding item media safely: images as checked bytes, audio as 16 kHz waveforms.

A corrupt or missing file never drops its item: the item is written without
that modality (presence mask 0) and the file goes to the dead letters.
Nothing outside the dataset root is read (see `raw.resolve_media_path`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator

import apache_beam as beam
import numpy as np

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter
from beam_jobs.item_records import ItemRecord
from tfrs_mm import fileio
from tfrs_mm.data import raw

MAX_MEDIA_BYTES = 64 << 20  # bigger files are almost certainly not catalog media
# A small file can declare a huge image (a decompression bomb): decoding would allocate
# height x width x 3 bytes. 40 MP is above an 8K frame; the image encoder downsizes to 128 px anyway.
MAX_IMAGE_PIXELS = 40_000_000
TARGET_RATE = 16_000  # musicnn's sample rate
REMOTE_SCHEMES = ("gs://", "s3://", "hdfs://", "azfs://")


def media_uri(raw_dir: str, value: str) -> str:
    """Where to read a media file named in the catalog, refusing anything outside the dataset root.

    Raises:
        raw.MediaPathError: if the path escapes the root, is absolute, or does not exist (local).
    """
    if "://" in value:
        if value.startswith(REMOTE_SCHEMES):
            return value
        raise raw.MediaPathError(f"URI {value!r}: only {', '.join(REMOTE_SCHEMES)} media URIs are read")
    if fileio.is_uri(raw_dir):
        parts = value.replace("\\", "/").split("/")
        if value.startswith("/") or ".." in parts:
            raise raw.MediaPathError(f"path {value!r} points outside the dataset root")
        return fileio.join(raw_dir, value)
    return raw.resolve_media_path(raw_dir, value)


def read_media(uri: str) -> bytes:
    """All bytes of a media file (local or remote), refusing oversized ones."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri, mime_type="application/octet-stream", compression_type="uncompressed") as f:
        data = f.read(MAX_MEDIA_BYTES + 1)
    if len(data) > MAX_MEDIA_BYTES:
        raise ValueError(f"larger than {MAX_MEDIA_BYTES >> 20} MiB")
    if not data:
        raise ValueError("empty file")
    return data


class _MediaFn(beam.DoFn):
    """ItemRecord → (item_id, decoded media); path checks, reads and dead letters are shared.

    Subclasses set `modality` and `failure` (the dead-letter reason when
    decoding fails) and implement `decode(data)`, raising ValueError.
    """

    modality = ""
    failure = ""

    def __init__(self, raw_dir: str):
        self.raw_dir = raw_dir

    def process(self, item: ItemRecord) -> Iterator:
        try:
            data = read_media(media_uri(self.raw_dir, getattr(item, self.modality)))
        except raw.MediaPathError as e:
            yield self.letter(item, e.reason, str(e))
            return
        except (OSError, ValueError) as e:
            yield self.letter(item, "unreadable file", str(e))
            return
        try:
            decoded = self.decode(data)
        except ValueError as e:
            yield self.letter(item, getattr(e, "reason", self.failure), _first_line(e))
            return
        yield item.item_id, decoded

    def decode(self, data: bytes):
        raise NotImplementedError

    def letter(self, item: ItemRecord, reason: str, detail: str) -> beam.pvalue.TaggedOutput:
        row = {"item_id": item.item_id, self.modality: getattr(item, self.modality)}
        letter = DeadLetter(f"items.{self.modality}", reason, detail, item.file, item.line, row)
        return beam.pvalue.TaggedOutput(DEAD_LETTER, letter)


class ReadImageFn(_MediaFn):
    """ItemRecord with an image → (item_id, encoded bytes) after a full trial decode."""

    modality = "image"
    failure = "corrupt image"

    def decode(self, data: bytes) -> bytes:
        import tensorflow as tf

        declared = declared_pixels(data)
        if declared is not None and declared > MAX_IMAGE_PIXELS:
            raise ImageTooLargeError(f"the image declares {declared:,} pixels, over {MAX_IMAGE_PIXELS:,}")
        try:
            # Decode exactly as the image encoder will, so a batch never fails in the model.
            pixels = tf.io.decode_image(data, channels=3, expand_animations=False)
        except tf.errors.OpError as e:
            raise ValueError(e.message) from e
        if min(pixels.shape[:2]) < 1:
            raise ValueError("image has no pixels")
        return data


class ImageTooLargeError(ValueError):
    """An image whose header declares more pixels than `MAX_IMAGE_PIXELS`: refused before decoding."""

    reason = "image too large"


def declared_pixels(data: bytes) -> int | None:
    """Width x height from a PNG, GIF, BMP or JPEG header, without decoding; None if not found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
    elif data[:2] == b"BM" and len(data) >= 26:
        width, height = (abs(v) for v in struct.unpack("<ii", data[18:26]))  # height < 0: top-down rows
    elif data[:2] == b"\xff\xd8":
        import tensorflow as tf

        try:
            height, width = tf.image.extract_jpeg_shape(data)[:2].numpy().tolist()
        except tf.errors.OpError:
            return None  # no readable frame header: the trial decode reports it
    else:
        return None
    return int(width) * int(height)


class DecodeAudioFn(_MediaFn):
    """ItemRecord with audio → (item_id, [seconds * 16000] float32 mono waveform).

    WAV (16-bit PCM) decodes with core `tf.audio.decode_wav`; other formats
    (other WAV encodings, FLAC, OGG, MP3) with soundfile. Clips are mixed to
    mono, resampled to 16 kHz, then tiled (short clips) or centre-cropped to
    a fixed length, so batches stack and every clip fills whole 3 s patches.
    """

    modality = "audio"
    failure = "undecodable audio"

    def __init__(self, raw_dir: str, seconds: float):
        super().__init__(raw_dir)
        self.seconds = seconds

    def decode(self, data: bytes) -> np.ndarray:
        waveform, rate = decode_audio(data)
        return fit_length(resample(waveform, rate, TARGET_RATE), int(self.seconds * TARGET_RATE))


class TruncatedAudioError(ValueError):
    """An audio file that ends before its own header says it does (a cut-off copy or download)."""

    reason = "truncated audio"


def check_wav_complete(data: bytes) -> None:
    """Raises `TruncatedAudioError` if a WAV file ends inside a chunk its header declares.

    Decoders read what is there and return a shorter clip without a word, so a
    half-copied WAV would be tiled up to length and embedded as if it were whole.
    Only a file whose chunks walk like a WAV's up to its `fmt ` chunk is judged;
    anything else is left to the decoders to call undecodable. A data size of 0
    or 0xFFFFFFFF (a stream whose writer never learned the length) is accepted.
    """
    if len(data) < 12 or data[8:12] != b"WAVE":
        return
    position, seen_format = 12, False
    while position + 8 <= len(data):
        chunk, size = (
            data[position : position + 4],
            int.from_bytes(data[position + 4 : position + 8], "little"),
        )
        if not all(32 <= c < 127 for c in chunk):
            return  # not a chunk id: whatever this is, it is not a cut-off WAV
        seen_format |= chunk == b"fmt "
        if chunk == b"data" and size in (0, 0xFFFFFFFF):
            return
        if position + 8 + size > len(data):
            if not seen_format:
                return
            raise TruncatedAudioError(
                f"the WAV {chunk.decode('ascii')!r} chunk declares {size:,} bytes, "
                f"the file holds {len(data) - position - 8:,}"
            )
        if chunk == b"data":
            return
        position += 8 + size + (size & 1)  # chunks are padded to even sizes
    if seen_format:
        raise TruncatedAudioError(f"the WAV ends before its data chunk ({len(data):,} bytes)")


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Encoded audio → ([n] float32 mono in [-1, 1], sample rate).

    Raises:
        TruncatedAudioError: for a WAV cut short.
        ValueError: if undecodable.
    """
    if data[:4] == b"RIFF":
        check_wav_complete(data)
        import tensorflow as tf

        try:
            audio, rate = tf.audio.decode_wav(data)
            return _mono(audio.numpy()), int(rate)
        except tf.errors.OpError:
            pass  # not 16-bit PCM: soundfile reads the other WAV encodings
    try:
        import soundfile

        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError and RuntimeError types
        raise ValueError(f"not a decodable audio file ({e})") from e
    return _mono(audio), int(rate)


def _mono(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise ValueError("no audio samples")
    mono = audio.mean(axis=1).astype(np.float32)
    if not np.all(np.isfinite(mono)):
        raise ValueError("audio holds NaN or infinite samples")
    return mono


def resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited (FFT) resampling of a mono waveform to `target` Hz."""
    if rate == target:
        return waveform
    n_out = max(1, round(len(waveform) * target / rate))
    spectrum = np.fft.rfft(waveform)
    bins = n_out // 2 + 1
    spectrum = spectrum[:bins] if len(spectrum) >= bins else np.pad(spectrum, (0, bins - len(spectrum)))
    return (np.fft.irfft(spectrum, n_out) * (n_out / len(waveform))).astype(np.float32)


def fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """Tiles a short clip or centre-crops a long one to exactly `length` samples."""
    if len(waveform) < length:
        waveform = np.tile(waveform, -(-length // len(waveform)))
        return waveform[:length]
    start = (len(waveform) - length) // 2
    return waveform[start : start + length]


def _first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__
