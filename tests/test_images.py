"""Image ingest: 8/16-bit PNG and JPEG, DICOM (the real radiograph), corrupt files, PNG output."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from pairaug_ray import images


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_png_8_and_16_bit_keep_their_depth():
    ramp8 = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    out8 = images.decode_image(_png(ramp8), "ramp8.png")
    assert out8.dtype == np.uint8 and np.array_equal(out8, ramp8)

    ramp16 = np.tile(np.arange(0, 65536, 257, dtype=np.uint16), (3, 1))
    out16 = images.decode_image(images.encode_png(ramp16), "ramp16.png")
    assert out16.dtype == np.uint16 and np.array_equal(out16, ramp16)


def test_jpeg_and_rgb_become_grey():
    grey = np.full((16, 16), 100, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([grey] * 3, -1)).save(buf, format="JPEG", quality=95)
    out = images.decode_image(buf.getvalue(), "x.jpg")
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert abs(int(out.mean()) - 100) <= 2


def test_real_dicom_is_inverted_and_windowed(real_dicom_path):
    ds = pydicom.dcmread(real_dicom_path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and int(ds.BitsStored) == 15
    arr = images.read_image(str(real_dicom_path))
    assert arr.dtype == np.uint16 and arr.shape == ds.pixel_array.shape
    assert arr.min() == 0 and arr.max() == 65535  # rescaled to the full 16-bit range
    h, w = arr.shape
    # Displayed correctly, the mediastinum/spine (centre) is brighter than the lung fields beside it,
    # and the air above the shoulders is dark. MONOCHROME1 stored values are the opposite.
    centre = arr[int(0.3 * h) : int(0.5 * h), int(0.47 * w) : int(0.53 * w)].mean()
    lung = arr[int(0.3 * h) : int(0.5 * h), int(0.25 * w) : int(0.35 * w)].mean()
    assert centre > lung * 1.2
    raw = ds.pixel_array.astype(float)
    assert (
        raw[int(0.3 * h) : int(0.5 * h), int(0.47 * w) : int(0.53 * w)].mean()
        < raw[int(0.3 * h) : int(0.5 * h), int(0.25 * w) : int(0.35 * w)].mean()
    )


def test_dicom_monochrome2_8bit_without_window(tmp_path, real_dicom_path):
    ds = pydicom.dcmread(real_dicom_path)
    small = (ds.pixel_array[::8, ::8] // 128).astype(np.uint8)
    ds.PixelData = small.tobytes()
    ds.Rows, ds.Columns = small.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PhotometricInterpretation = "MONOCHROME2"
    for tag in ("WindowCenter", "WindowWidth"):
        if tag in ds:
            delattr(ds, tag)
    path = tmp_path / "small.dcm"
    ds.save_as(path)
    arr = images.read_image(str(path))
    assert arr.dtype == np.uint8 and arr.shape == small.shape
    # No inversion for MONOCHROME2: order of pixel values is preserved.
    assert np.corrcoef(arr.ravel().astype(float), small.ravel().astype(float))[0, 1] > 0.99


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable"),
        (b"\x00" * 128 + b"DICM" + b"\x00" * 10, "not a readable DICOM"),
    ],
)
def test_corrupt_images_raise_named_errors(data, reason):
    with pytest.raises(images.ImageReadError) as e:
        images.decode_image(data, "s3://bucket/broken.png")
    assert "s3://bucket/broken.png" in str(e.value) and reason in str(e.value)


def test_truncated_png_is_an_error(tmp_path):
    png = images.encode_png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(png[: len(png) // 2])
    with pytest.raises(images.ImageReadError, match="cut.png"):
        images.read_image(str(path))
    with pytest.raises(images.ImageReadError, match="file not found"):
        images.read_image(str(tmp_path / "missing.png"))


def test_write_png_is_content_addressed_and_idempotent(tmp_path):
    arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    uri1, id1 = images.write_png(arr, str(tmp_path))
    uri2, id2 = images.write_png(arr, str(tmp_path))
    assert (uri1, id1) == (uri2, id2)
    assert uri1.endswith(f"{id1[:2]}/{id1}.png")
    assert len(list(tmp_path.rglob("*.png"))) == 1
    assert np.array_equal(images.read_image(uri1), arr)
    _, other = images.write_png(arr + 1, str(tmp_path))
    assert other != id1


def test_to_uint8():
    assert images.to_uint8(np.array([[0, 65535, 32896]], np.uint16)).tolist() == [[0, 255, 128]]
    with pytest.raises(TypeError):
        images.to_uint8(np.zeros((2, 2), np.float32))


@pytest.mark.s3
def test_a_batch_of_images_is_read_and_written_together_on_s3_and_local_disk(s3_bucket, tmp_path):
    """write_pngs / read_images: one batch may mix S3 objects and local files (generated edits beside
    the real images they came from); each image keeps its place, and an unreadable one is named."""
    arrays = [np.full((16, 16), v, np.uint8) for v in (10, 90, 170)]
    on_s3 = images.write_pngs(arrays, f"{s3_bucket}/images")
    local = images.write_pngs(arrays[:1], str(tmp_path / "images"))
    assert [i for _, i in on_s3] == [images.write_png(a, str(tmp_path / "one"))[1] for a in arrays]
    uris = [
        on_s3[2][0],
        local[0][0],
        f"{s3_bucket}/images/no-such.png",
        on_s3[0][0],
        str(tmp_path / "gone.png"),
    ]
    pictures, errors = images.read_images(uris)
    assert [None if p is None else int(p[0, 0]) for p in pictures] == [170, 10, None, 10, None]
    assert errors[0] is errors[1] is errors[3] is None
    assert errors[2] == f"cannot read image {uris[2]}: file not found"
    assert errors[4] == f"cannot read image {uris[4]}: file not found"
