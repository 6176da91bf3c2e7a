"""PyTorch definitions of the networks (imports torch)."""
