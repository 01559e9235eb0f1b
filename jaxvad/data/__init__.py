"""Data: on-disk cache, synthetic scenes, window batches (SPEC 1.3) and meta-learning episodes (SPEC 3.5)."""
