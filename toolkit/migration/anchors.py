"""Class anchors per modality: prototypes from confident segments, or text embeddings.

Prototypes (default for HAN features): the seed of class c is the mean centred embedding of
the segments of the videos whose weak label is c alone (a single-label video's sound or picture
is mostly that class); a class with no single-label video is seeded from the multi-label videos
that carry it, each weighted 1/len(weak label). Refinement: the next prototype of c is the mean
of the unit embeddings of the segments (of videos carrying c) whose similarity to the current
prototype clears the current label-free threshold (see SimilarityBins).

Text anchors (language-aligned features): read from a safetensors file (`audio` and/or `visual`
tensors, shape (25, dim), metadata `classes` = JSON list of the class names), or computed with
openai-clip's text tower from a checkpoint file the user names (visual modality only: CLIP text
does not live in CLAP's audio space). A modality without text anchors falls back to prototypes.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mertk.corpora.llp_annotations import LLP_CLASSES, NUM_CLASSES, NUM_SEGMENTS
from mertk.errors import InputError
from mertk.migration.embedding import Normaliser

TEXT_ANCHOR_FILE = "text_anchors.safetensors"  # the name a corpus' text anchors go by beside its features
SIMILARITY_BINS = 400  # histogram resolution on [-1, 1] for thresholds
VECTOR_BINS = 40  # coarser bins that also hold vector sums, for prototype refinement


class AnchorError(InputError):
    """An anchor file or checkpoint that cannot be used; the message names it."""


def unit_rows(matrix_c_d: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix_c_d, axis=1, keepdims=True)
    return (matrix_c_d / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class PrototypeSeeds:
    """Raw feature sums of single-label and multi-label videos per class (one modality)."""

    dim: int
    single_sum_c_d: np.ndarray = field(default=None)  # type: ignore[assignment]
    single_count_c: np.ndarray = field(default=None)  # type: ignore[assignment]
    multi_sum_c_d: np.ndarray = field(default=None)  # type: ignore[assignment]
    multi_count_c: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.single_sum_c_d = np.zeros((NUM_CLASSES, self.dim))
        self.single_count_c = np.zeros(NUM_CLASSES)
        self.multi_sum_c_d = np.zeros((NUM_CLASSES, self.dim))
        self.multi_count_c = np.zeros(NUM_CLASSES)

    def add(self, weak_classes: Sequence[int], raw_t_d: np.ndarray, sum_d: np.ndarray | None = None) -> None:
        total_d = raw_t_d.sum(axis=0, dtype=np.float64) if sum_d is None else sum_d
        if len(weak_classes) == 1:
            self.single_sum_c_d[weak_classes[0]] += total_d
            self.single_count_c[weak_classes[0]] += raw_t_d.shape[0]
        else:
            for class_index in weak_classes:
                self.multi_sum_c_d[class_index] += total_d / len(weak_classes)
                self.multi_count_c[class_index] += raw_t_d.shape[0] / len(weak_classes)

    def add_block(self, weak_classes: Sequence[Sequence[int]], sums_n_d: np.ndarray, rows: int = NUM_SEGMENTS) -> None:
        """`add` for n videos at once: their weak labels and per-video column sums (n, dim).

        A plain loop: with 1-3 classes per video it beats grouping (np.add.at, reduceat) here.
        """
        for classes, sum_d in zip(weak_classes, sums_n_d):
            if len(classes) == 1:
                self.single_sum_c_d[classes[0]] += sum_d
                self.single_count_c[classes[0]] += rows
            else:
                for class_index in classes:
                    self.multi_sum_c_d[class_index] += sum_d / len(classes)
                    self.multi_count_c[class_index] += rows / len(classes)

    def prototypes(self, normaliser: Normaliser) -> tuple[np.ndarray, list[str]]:
        """(25, dim) unit rows (zero rows for classes never seen) and how each was seeded."""
        rows = np.zeros((NUM_CLASSES, self.dim))
        sources = []
        for c in range(NUM_CLASSES):
            if self.single_count_c[c] > 0:
                rows[c] = normaliser.linear(self.single_sum_c_d[c], self.single_count_c[c])
                sources.append("single-label videos")
            elif self.multi_count_c[c] > 0:
                rows[c] = normaliser.linear(self.multi_sum_c_d[c], self.multi_count_c[c])
                sources.append("multi-label videos")
            else:
                sources.append("none (class absent from the weak labels)")
        return unit_rows(rows), sources


def bin_index(similarity: np.ndarray, bins: int) -> np.ndarray:
    return np.clip(((similarity + 1.0) * 0.5 * bins).astype(np.int64), 0, bins - 1)


def bin_edges(bins: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, bins + 1)


@dataclass
class SimilarityBins:
    """Streaming statistics of one modality's similarities to the anchors of weak classes.

    For each class: a histogram of the similarity of every segment of every video carrying the
    class, and one of all segments (their difference is the null: videos without the class),
    for the label-free threshold; when `vectors` is on, the sum of unit embeddings per
    coarse similarity bin (for refinement); when dense truth is given, the histograms of
    positive and negative segments separately (for `--calibrate val`).
    """

    dim: int
    vectors: bool = True
    counts_c_b: np.ndarray = field(default=None)  # type: ignore[assignment]
    all_counts_c_b: np.ndarray = field(default=None)  # type: ignore[assignment]
    vector_sums_c_b_d: np.ndarray | None = None
    vector_counts_c_b: np.ndarray = field(default=None)  # type: ignore[assignment]
    positive_c_b: np.ndarray = field(default=None)  # type: ignore[assignment]
    negative_c_b: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.counts_c_b = np.zeros((NUM_CLASSES, SIMILARITY_BINS), dtype=np.int64)
        self.all_counts_c_b = np.zeros((NUM_CLASSES, SIMILARITY_BINS), dtype=np.int64)
        self.positive_c_b = np.zeros((NUM_CLASSES, SIMILARITY_BINS), dtype=np.int64)
        self.negative_c_b = np.zeros((NUM_CLASSES, SIMILARITY_BINS), dtype=np.int64)
        self.vector_counts_c_b = np.zeros((NUM_CLASSES, VECTOR_BINS), dtype=np.int64)
        if self.vectors:
            self.vector_sums_c_b_d = np.zeros((NUM_CLASSES * VECTOR_BINS, self.dim))

    def add(
        self,
        similarity_n_t_c: np.ndarray,
        weak_n_c: np.ndarray,
        centred_r_d: np.ndarray | None = None,
        inverse_norm_r: np.ndarray | None = None,
        truth_n_c_t: np.ndarray | None = None,
        labelled_n: np.ndarray | None = None,
    ) -> None:
        """One block: similarities (n, 10, 25) of the n videos with weak labels (n, 25).

        For refinement, `centred_r_d` are the (n * 10, dim) centred rows and `inverse_norm_r`
        1/|u| of each, so that sum(u/|u|) = scale * sum(centred / |u|).
        """
        self.add_part(self.block_part(similarity_n_t_c, weak_n_c, centred_r_d, inverse_norm_r, truth_n_c_t, labelled_n))

    def block_part(
        self,
        similarity_n_t_c: np.ndarray,
        weak_n_c: np.ndarray,
        centred_r_d: np.ndarray | None = None,
        inverse_norm_r: np.ndarray | None = None,
        truth_n_c_t: np.ndarray | None = None,
        labelled_n: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """What one block adds (see `add`), without adding it: blocks can be computed in any
        order or thread, then added with `add_part` in block order (the same sums as `add`)."""
        part: dict[str, np.ndarray] = {}
        mask_n_t_c = np.broadcast_to(weak_n_c[:, None, :], similarity_n_t_c.shape)
        video_i, segment_i, class_i = np.nonzero(mask_n_t_c)
        values = similarity_n_t_c[video_i, segment_i, class_i]
        fine = bin_index(values, SIMILARITY_BINS)
        size = NUM_CLASSES * SIMILARITY_BINS
        part["counts_c_b"] = np.bincount(class_i * SIMILARITY_BINS + fine, minlength=size).reshape(NUM_CLASSES, SIMILARITY_BINS)
        # Every segment against every class; minus the weak-label ones this is the null histogram.
        all_keys = np.arange(NUM_CLASSES) * SIMILARITY_BINS + bin_index(similarity_n_t_c, SIMILARITY_BINS)
        part["all_counts_c_b"] = np.bincount(all_keys.ravel(), minlength=size).reshape(NUM_CLASSES, SIMILARITY_BINS)
        if truth_n_c_t is not None:
            # Only videos with dense labels (labelled_n) count as positives or negatives.
            keep = labelled_n[video_i] if labelled_n is not None else np.ones(len(video_i), dtype=bool)
            truth = truth_n_c_t[video_i, class_i, segment_i]
            keys = class_i * SIMILARITY_BINS + fine
            part["positive_c_b"] = np.bincount(keys[truth & keep], minlength=size).reshape(NUM_CLASSES, SIMILARITY_BINS)
            part["negative_c_b"] = np.bincount(keys[~truth & keep], minlength=size).reshape(NUM_CLASSES, SIMILARITY_BINS)
        coarse_keys = class_i * VECTOR_BINS + bin_index(values, VECTOR_BINS)
        part["vector_counts_c_b"] = np.bincount(coarse_keys, minlength=NUM_CLASSES * VECTOR_BINS).reshape(NUM_CLASSES, VECTOR_BINS)
        if self.vectors and len(coarse_keys):
            from scipy.sparse import csr_matrix

            # Sum of w * centred row per (class, coarse bin), as one sparse x dense product.
            rows = video_i * NUM_SEGMENTS + segment_i
            weights = csr_matrix(
                (inverse_norm_r[rows].astype(np.float32), (coarse_keys, rows)),
                shape=(NUM_CLASSES * VECTOR_BINS, centred_r_d.shape[0]),
            )
            part["vector_sums_c_b_d"] = (weights @ centred_r_d).astype(np.float64)
        return part

    def add_part(self, part: dict[str, np.ndarray]) -> None:
        """Add what `block_part` computed for one block."""
        for name, values in part.items():
            total = getattr(self, name)
            total += values

    @property
    def null_counts_c_b(self) -> np.ndarray:
        return self.all_counts_c_b - self.counts_c_b

    def refined_prototypes(self, thresholds_c: np.ndarray, previous_c_d: np.ndarray, scale_d: np.ndarray) -> np.ndarray:
        """Mean unit embedding of the segments at or above each class's threshold (coarse bins).

        A class with no such segment keeps its previous prototype.
        """
        assert self.vector_sums_c_b_d is not None
        sums_c_b_d = self.vector_sums_c_b_d.reshape(NUM_CLASSES, VECTOR_BINS, self.dim)
        edges = bin_edges(VECTOR_BINS)
        rows = previous_c_d.astype(np.float64).copy()
        for c in range(NUM_CLASSES):
            if not np.isfinite(thresholds_c[c]):
                continue
            # The coarse bin holding the threshold counts when its centre lies above it.
            first = int(bin_index(np.asarray(thresholds_c[c]), VECTOR_BINS))
            if thresholds_c[c] > 0.5 * (edges[first] + edges[first + 1]):
                first += 1
            if self.vector_counts_c_b[c, first:].sum() > 0:
                rows[c] = sums_c_b_d[c, first:].sum(axis=0) * scale_d
        return unit_rows(rows)


# ---------------------------------------------------------------- text anchors


def load_text_anchors(path: Path | str) -> dict[str, np.ndarray]:
    """{modality: (25, dim) unit rows} from a safetensors file (see the module docstring)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise AnchorError(f"{path}: text-anchor file not found")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise AnchorError(f"{path}: not a readable safetensors file ({error})") from None
    classes = list(LLP_CLASSES)
    if "classes" in metadata:
        try:
            classes = json.loads(metadata["classes"])
        except json.JSONDecodeError:
            raise AnchorError(f"{path}: metadata 'classes' is not a JSON list") from None
    if sorted(classes) != sorted(LLP_CLASSES):
        missing = sorted(set(LLP_CLASSES) - set(classes))
        raise AnchorError(f"{path}: classes do not match the 25 LLP classes (missing: {', '.join(missing) or '-'})")
    order = [classes.index(name) for name in LLP_CLASSES]
    anchors = {}
    for modality in ("audio", "visual"):
        if modality not in tensors:
            continue
        matrix = np.asarray(tensors[modality], dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(classes) or not np.isfinite(matrix).all():
            raise AnchorError(f"{path}: tensor {modality!r} has shape {matrix.shape} or non-finite values, expected (25, dim)")
        anchors[modality] = unit_rows(matrix[order])
    if not anchors:
        raise AnchorError(f"{path}: holds neither an 'audio' nor a 'visual' tensor")
    return anchors


def class_prompt(name: str) -> str:
    """Text prompt of a class for CLIP: 'a photo of frying (food).'"""
    return f"a photo of {name.replace('_', ' ').lower()}."


def _load_module_from_clip_package(module: str):
    """openai-clip's `clip/<module>.py` loaded on its own: `import clip` pulls torchvision in."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise AnchorError("the openai-clip package is not installed (pip install openai-clip)")
    folder = Path(list(spec.submodule_search_locations)[0])
    name = f"_mertk_clip_{module}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, folder / f"{module}.py")
    loaded = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = loaded
    module_spec.loader.exec_module(loaded)
    return loaded


def clip_text_anchors(checkpoint: Path | str, prompts: Sequence[str] | None = None) -> np.ndarray:
    """(25, embed_dim) unit rows: CLIP text embeddings of the class prompts.

    `checkpoint` is a state dict saved with torch.save (the file openai-clip's loader produces
    from a JIT archive via `model.state_dict()`); it is loaded with weights_only=True and never
    downloaded.
    """
    import torch

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise AnchorError(f"{checkpoint}: CLIP checkpoint not found")
    try:
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad file
        raise AnchorError(f"{checkpoint}: not a loadable CLIP state dict ({type(error).__name__}: {error})") from None
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    model_module = _load_module_from_clip_package("model")
    tokenizer_module = _load_module_from_clip_package("simple_tokenizer")
    try:
        model = model_module.build_model(dict(state_dict)).float().eval()
    except Exception as error:  # build_model fails with KeyError, AssertionError, RuntimeError, ...
        raise AnchorError(f"{checkpoint}: not a CLIP state dict ({type(error).__name__}: {error})") from None
    tokenizer = tokenizer_module.SimpleTokenizer()
    prompts = list(prompts or [class_prompt(name) for name in LLP_CLASSES])
    context = model.context_length
    start, end = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    tokens = torch.zeros(len(prompts), context, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids = [start, *tokenizer.encode(prompt), end][:context]
        ids[-1] = end
        tokens[row, : len(ids)] = torch.tensor(ids)
    with torch.no_grad():
        text = model.encode_text(tokens).float().numpy()
    if not np.isfinite(text).all():
        raise AnchorError(f"{checkpoint}: text embeddings are not finite")
    return unit_rows(text)
