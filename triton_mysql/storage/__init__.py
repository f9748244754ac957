"""Snapshot storage: one contract (`base.Storage`), one module per backend.

`open_storage(url, config)` picks the backend from the URL's scheme.  The
backends are imported lazily so that a hook that never touches storage (or
uses file://) does not pay for boto3 or the manta SDK.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from .base import CHUNK, NotFound, ObjectInfo, ObjectReader, ObjectWriter, Storage, StorageError

__all__ = ["CHUNK", "NotFound", "ObjectInfo", "ObjectReader", "ObjectWriter", "Storage", "StorageError",
           "open_storage"]


def open_storage(url: str | None, config: Any) -> Storage:
    """The storage for `url` (default: `config.backup_url`).

    `config` supplies the backend settings (`s3_endpoint_url`,
    `s3_create_bucket`, `manta_*`); a missing setting is a StorageError
    naming the variable.
    """
    url = url or config.backup_url
    scheme = urlparse(url).scheme
    if scheme == "file":
        from .local import LocalStorage
        return LocalStorage(url)
    if scheme == "s3":
        from .s3 import S3Storage
        return S3Storage(url, endpoint_url=getattr(config, "s3_endpoint_url", None),
                         create_bucket=bool(getattr(config, "s3_create_bucket", False)))
    if scheme == "manta":
        from .manta import from_config
        return from_config(url, config)
    raise StorageError(f"{url}: unknown storage scheme {scheme + '://' if scheme else '(none)'}; "
                       f"use file://, s3:// or manta://")
