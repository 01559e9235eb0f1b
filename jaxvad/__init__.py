"""jaxvad: video anomaly detection (MPN, PGM) in JAX/Flax."""

__version__ = "0.1.0"
