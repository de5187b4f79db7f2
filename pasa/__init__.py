"""PaSa: an LLM agent for comprehensive academic paper search (open reproduction of arXiv 2501.10120).

``import pasa`` is light: the model backends and tools are imported from their modules when needed.
"""

__version__ = "0.1.0"
