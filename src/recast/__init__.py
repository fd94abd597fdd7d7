"""recast: align a black-box LLM by recasting its input with a small refiner LM."""

__version__ = "0.1.0"
