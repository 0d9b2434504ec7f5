"""mertk: Uni-MER construction from CASME II, label migration on LLP, schemas, metrics, trainers."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mertk")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
