"""onezone package."""
