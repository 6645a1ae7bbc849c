"""The one place that turns a gallery configuration into a gallery."""

from __future__ import annotations

from person_search.core.config import GalleryConfig
from person_search.core.gallery.base import Gallery


def make_gallery(cfg: GalleryConfig, *, dim: int, model_id: str) -> Gallery:
    """Create the gallery ``cfg.backend`` names: ``faiss`` (RollingGallery) or ``milvus`` (MilvusGallery).

    Raises:
        ConfigError: a bad configuration value.
        GalleryBackendError: the Milvus backend cannot be reached or refuses the collection.
    """
    cfg.validate()
    if cfg.backend == "milvus":
        from person_search.core.gallery.milvus import MilvusGallery  # pymilvus is imported only here
        return MilvusGallery(cfg, dim=dim, model_id=model_id)
    from person_search.core.gallery.rolling import RollingGallery
    return RollingGallery(cfg, dim=dim, model_id=model_id)
