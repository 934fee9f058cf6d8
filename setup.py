"""The wheel carries the contracts' ABIs and bytecode, exported from forge's `out/` as it is
built (scripts/export_abi.py); everything else is in pyproject.toml."""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithAbi(build_py):
    def run(self) -> None:
        runpy.run_path(str(ROOT / "scripts" / "export_abi.py"))["ensure"]()
        super().run()


setup(cmdclass={"build_py": BuildPyWithAbi})
