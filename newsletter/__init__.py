"""paper-digest: turn daily arXiv digest posts into one good email."""

__version__ = "0.1.0"
