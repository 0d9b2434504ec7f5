"""Face box and 68 facial landmarks (dlib), shared by the sample-data generator and the Uni-MER builder."""
from mertk.face.landmarks import (
    PREDICTOR_ENV_VAR,
    FaceBox,
    FaceLandmarks,
    PredictorNotFoundError,
    box_from_landmarks,
    default_predictor_path,
    detect_face,
    find_face,
    frontal_face_detector,
    inter_ocular_distance,
    landmarks_68,
    load_models,
    resolve_predictor_path,
    to_gray,
)

__all__ = [
    "PREDICTOR_ENV_VAR",
    "FaceBox",
    "FaceLandmarks",
    "PredictorNotFoundError",
    "box_from_landmarks",
    "default_predictor_path",
    "detect_face",
    "find_face",
    "frontal_face_detector",
    "inter_ocular_distance",
    "landmarks_68",
    "load_models",
    "resolve_predictor_path",
    "to_gray",
]
