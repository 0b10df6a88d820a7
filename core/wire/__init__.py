"""Wire formats that live once in core; providers only name their endpoint and options."""
