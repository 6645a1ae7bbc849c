"""The gallery of everyone seen: CLIP image embeddings grouped by track, searchable by text.

One job per module: ``base`` (the :class:`Gallery` protocol, errors, input checks),
``store`` (vectors in time-ordered blocks), ``policy`` (per-track aggregation),
``search`` (distinct-track search), ``ann`` (the IVF option), ``thumbs`` (the JPEG
encoder and the thumbnail budget), ``snapshot`` (``.npz`` files), ``rolling`` (the FAISS
:class:`RollingGallery`), ``milvus`` (:class:`MilvusGallery`) and ``factory``
(:func:`make_gallery`, the one place that picks a backend from the config).
"""

from person_search.core.gallery.base import (Gallery, GalleryBackendError, GalleryMismatchError, SnapshotError,
                                             TrackInfo)
from person_search.core.gallery.factory import make_gallery

__all__ = ["Gallery", "GalleryBackendError", "GalleryMismatchError", "MilvusGallery", "RollingGallery",
           "SnapshotError", "TrackInfo", "make_gallery"]


def __getattr__(name):
    # FAISS and pymilvus load on first use: the thumbnail encoder alone (camera,
    # detector) pulls in neither
    if name == "RollingGallery":
        from person_search.core.gallery.rolling import RollingGallery
        return RollingGallery
    if name == "MilvusGallery":
        from person_search.core.gallery.milvus import MilvusGallery
        return MilvusGallery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
