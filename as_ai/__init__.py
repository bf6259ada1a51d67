"""as-ai: open, checkable AI for ankylosing spondylitis (research use only)."""
__version__ = "0.1.0"
