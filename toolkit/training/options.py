"""The trainers' option values, in a module that imports nothing heavy.

The CLI offers these as choices when it parses a command line; the trainers and models import
them from here too, so each list has one home and `mertk --help` does not load torch.
"""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")
EXPERTS = ("structure", "texture", "semantics")  # the MER model's experts, in canonical order
SEMANTIC_ENCODERS = ("auto", "minilm", "region-stats")
# What a held-out sample contributes at test time: its video alone, or (an oracle, never a
# result) the coded AUs and label-constrained caption as well.
VIDEO_INPUTS = "video"
ORACLE_INPUTS = "oracle-au"
TEST_INPUTS = (VIDEO_INPUTS, ORACLE_INPUTS)
PSEUDO_TARGETS = ("hard", "soft")  # migrated segment labels used as 0/1 targets or as their soft scores
TIE_MODES = ("pull", "leak")
