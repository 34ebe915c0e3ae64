"""Feature extractors: one module per backend over one small base class; `registry` maps names to classes."""
