"""Standard-library-only helpers shared by every layer."""
