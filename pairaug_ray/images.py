"""Radiograph ingest and output: 8/16-bit PNG and JPEG, and DICOM.

Decoded images are single-channel numpy arrays, `uint8` or `uint16` at the bit depth of the source,
with "bright = dense" (bone white, air black) whatever the DICOM photometric interpretation.
Written images are PNGs named by the hash of their bytes, so writing the same image twice,
from a retry or a rerun, produces the same file and no duplicates.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from pairaug_ray import storage
from pairaug_ray.errors import UserError

DICOM_SUFFIXES = (".dcm", ".dicom")


class ImageReadError(UserError):
    """An image could not be read or decoded. The message names the file."""

    def __init__(self, uri: str, reason: str):
        super().__init__(f"cannot read image {uri}: {reason}")
        self.uri = uri
        self.reason = reason


def _is_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode PNG/JPEG/DICOM bytes to a 2-D `uint8` or `uint16` array. Raises ImageReadError."""
    if not data:
        raise ImageReadError(name, "file is empty")
    if _is_dicom(data, name):
        return _decode_dicom(data, name)
    return _decode_raster(data, name)


def read_image(uri: str) -> np.ndarray:
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise ImageReadError(uri, "file not found") from None
    except OSError as e:
        raise ImageReadError(uri, f"{type(e).__name__}: {e}") from None
    return decode_image(data, uri)


def read_images(uris: Iterable[str]) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Read a batch of images: (the images, each None where unreadable; the reason per image, None
    where it was read). A batch stage records the reasons in its rows and carries on. The files
    are fetched together (concurrent GETs on S3: storage.read_many)."""
    uris = list(uris)
    pictures: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for uri, data in zip(uris, storage.read_many(uris), strict=True):
        try:
            if isinstance(data, FileNotFoundError):
                raise ImageReadError(uri, "file not found")
            if isinstance(data, Exception):
                raise ImageReadError(uri, f"{type(data).__name__}: {data}")
            pictures.append(decode_image(data, uri))
            errors.append(None)
        except ImageReadError as e:  # its message names the file and the reason
            pictures.append(None)
            errors.append(str(e))
        except OSError as e:
            pictures.append(None)
            errors.append(f"cannot read image {uri}: {type(e).__name__}: {e}")
    return pictures, errors


def _decode_raster(data: bytes, name: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()  # decode now: a truncated file fails here, not later in a worker
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(name, f"not a readable PNG/JPEG/DICOM ({type(e).__name__}: {e})") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)
    elif img.mode == "I":
        # 16-bit PNGs often open as 32-bit "I"; the values still fit 16 bits.
        arr = np.asarray(img, dtype=np.int64)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageReadError(
                name, f"32-bit integer pixels outside the 16-bit range [{arr.min()}, {arr.max()}]"
            )
        arr = arr.astype(np.uint16)
    elif img.mode == "F":
        raise ImageReadError(name, "floating-point images are not supported; store radiographs as 8/16-bit")
    elif img.mode == "L":
        arr = np.asarray(img, dtype=np.uint8)
    else:
        # RGB(A), LA, P, CMYK: radiographs are grey; take luminance and drop alpha.
        arr = np.asarray(img.convert("L"), dtype=np.uint8)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ImageReadError(name, f"unexpected pixel array shape {arr.shape}")
    return arr


def _decode_dicom(data: bytes, name: str) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        raw = ds.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, EOFError, OSError) as e:
        raise ImageReadError(name, f"not a readable DICOM ({type(e).__name__}: {e})") from None
    if raw.ndim != 2:
        raise ImageReadError(name, f"DICOM pixel data has shape {raw.shape}; a single grey frame is expected")
    bits = int(getattr(ds, "BitsStored", 8 * raw.dtype.itemsize))
    # Rescale (slope/intercept) to modality units, then the stored window or VOI LUT if any.
    arr = apply_modality_lut(raw, ds).astype(np.float64)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        arr = apply_voi_lut(arr, ds, prefer_lut=True).astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        raise ImageReadError(name, "DICOM image is constant (no contrast after rescale/windowing)")
    scaled = (arr - lo) / (hi - lo)
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1 stores air bright; flip so that dense is bright
    if bits > 8:
        return np.round(scaled * 65535).astype(np.uint16)
    return np.round(scaled * 255).astype(np.uint8)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Any decoded radiograph as 8-bit (models take 8-bit input)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    raise TypeError(f"expected a uint8 or uint16 radiograph, got {arr.dtype}")


def encode_png(arr: np.ndarray) -> bytes:
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        img = Image.fromarray(arr, mode="L") if _pil_wants_mode() else Image.fromarray(arr)
    elif arr.dtype == np.uint16:
        img = Image.fromarray(arr.astype("<u2"))
    else:
        raise TypeError(f"expected uint8 or uint16 pixels, got {arr.dtype}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _pil_wants_mode() -> bool:
    # Pillow >= 11 deprecates the `mode` argument of fromarray; the dtype says it already.
    return int(Image.__version__.split(".")[0]) < 11


def content_name(png: bytes) -> str:
    return hashlib.sha256(png).hexdigest()[:24] + ".png"


def write_pngs(arrays: list[np.ndarray], directory: str) -> list[tuple[str, str]]:
    """`write_png` for a batch: encoded here, written together (concurrent PUTs on S3)."""
    out, todo = [], {}
    for arr in arrays:
        png = encode_png(arr)
        name = content_name(png)
        uri = storage.join(directory, name[:2], name)
        if not (storage.is_local(uri) and os.path.exists(uri)):
            todo[uri] = png
        out.append((uri, name[:-4]))
    storage.write_many(todo)
    return out


def write_png(arr: np.ndarray, directory: str) -> tuple[str, str]:
    """Write `arr` as `<directory>/<hh>/<hash>.png` unless it is there already.

    Returns (uri, image_id). The two-character fan-out keeps directories small on local disk.
    """
    png = encode_png(arr)
    name = content_name(png)
    uri = storage.join(directory, name[:2], name)
    if not (storage.is_local(uri) and os.path.exists(uri)):
        storage.write_bytes(uri, png)
    return uri, name[:-4]
