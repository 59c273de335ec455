"""Model families, one per file. Importing this package registers every family."""

from zeroforge.models.output import ModelOutput

__all__ = ["ModelOutput"]
