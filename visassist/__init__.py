"""visassist: a self-hosted remote visual-assist server for Tier 2/3 customer support."""

__version__ = "0.1.0"
