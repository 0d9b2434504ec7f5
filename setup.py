"""Maps the repository folders onto the installed package `mertk` (metadata lives in pyproject.toml)."""
from setuptools import find_packages, setup

FOLDERS = {"mertk": "toolkit", "mertk.pipelines": "pipelines", "mertk.schemas": "schemas"}

packages = []
package_dir = {}
for package, folder in FOLDERS.items():
    packages.append(package)
    package_dir[package] = folder
    for sub in find_packages(folder):
        packages.append(f"{package}.{sub}")
        package_dir[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
