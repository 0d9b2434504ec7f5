"""The field's evaluation protocols: AVVP segment/event F1 (avvp) and MER UF1/UAR (mer).

One implementation, used by the pipelines, the trainers and `mertk evaluate`.
"""
