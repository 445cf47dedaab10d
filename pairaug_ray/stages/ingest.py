"""Image ingest: decode every image of a manifest, record unreadable ones, optionally convert to PNG.

Converting normalises DICOM (MONOCHROME1 inverted, rescaled and windowed) and 16-bit sources into
PNGs at their bit depth, named by content hash under the output dataset, so that later stages read
one format. A file that cannot be read marks its row as an error that names the file; every
other row proceeds.
"""

from __future__ import annotations

import pyarrow as pa

from pairaug_ray import images, schema, storage
from pairaug_ray.pairs import IMAGES_DIR


def ingest_images(batch: pa.Table, *, out_root: str | None = None) -> pa.Table:
    rows = batch.to_pylist()
    image_dir = storage.join(out_root, IMAGES_DIR) if out_root else None
    for row in rows:
        if row.get(schema.STATUS) == schema.STATUS_ERROR:
            continue  # an earlier failure stays recorded as it was
        uri = row.get(schema.IMAGE_URI)
        if not uri:
            row[schema.STATUS], row[schema.ERROR] = (
                schema.STATUS_ERROR,
                f"row {row[schema.PAIR_ID]}: image_uri is empty",
            )
            continue
        try:
            pixels = images.read_image(uri)
        except images.ImageReadError as e:
            row[schema.STATUS], row[schema.ERROR] = schema.STATUS_ERROR, str(e)
            continue
        if image_dir is not None:
            new_uri, image_id = images.write_png(pixels, image_dir)
            row[schema.IMAGE_URI] = new_uri
            row[schema.IMAGE_ID] = row.get(schema.IMAGE_ID) or image_id
    return schema.rows_to_table(rows)
