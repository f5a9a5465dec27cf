"""kms package."""
