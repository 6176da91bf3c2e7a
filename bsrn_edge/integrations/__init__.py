"""Bridges from bsrn-edge to other tools' model loaders.

Each submodule imports its host library (and torch) only when it is imported itself, so importing this
package costs nothing. ``bsrn_edge.integrations.spandrel`` teaches spandrel (chaiNNer, ComfyUI, A1111's
model loader) to load BSRN, BSRN-S, IMDN, RFDN and RLFN checkpoints.
"""
