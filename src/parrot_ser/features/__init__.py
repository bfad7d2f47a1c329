"""The feature store: resumable, memory-mappable features of frozen encoders.

Read:  ``store = open_store(DIR); fs = store.get("hubert-base"); X = fs.pooled()``
Write: ``extract_features(manifest, encoder, DIR, frames=False, dtype="float32")``
Layout and crash-safety rules: see store.py and writer.py, and docs/features.md."""

from parrot_ser.features.store import EncoderFeatures, FeatureStore, open_store
from parrot_ser.features.writer import STOP_ENV, bucket_batches, extract_features

__all__ = ["open_store", "FeatureStore", "EncoderFeatures", "extract_features", "bucket_batches", "STOP_ENV"]
