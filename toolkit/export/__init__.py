"""Instruction data in the JSON layouts MLLM fine-tuning frameworks read (LLaVA, ShareGPT)."""
from mertk.export.mllm import EXPORT_FORMATS, ExportError, ExportSummary, export_instructions

__all__ = ["EXPORT_FORMATS", "ExportError", "ExportSummary", "export_instructions"]
