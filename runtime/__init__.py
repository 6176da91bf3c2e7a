"""bsrn_edge.runtime: the torch-free inference runtime."""
