"""FINDER: eigenspace-residual classification and anomaly detection."""
