"""The bundled models: the three-expert gated MER model and the hybrid-attention AVVP parser.

Models are plain torch modules; `mertk.models.checkpoint` saves and loads them in a format that
identifies them as ours (safetensors weights with a mertk header; training state loaded with
`weights_only=True`).
"""
