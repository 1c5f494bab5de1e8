"""The build's one compiled part: the thin client's server path (builder/cli/native_client.c).

pyproject.toml holds the metadata; this file only compiles the native client into the
built package, with the system's C compiler and no dependency but libc, and marks the
wheel platform-specific when it carries it (py3-none-<platform>: the binary runs any
Python; it only execs one). A missing or failing compiler does not break the build: the
wheel has no native client (a warning says so) and bin/builder runs the Python client, as
the editable dev install does (it compiles nothing: the checkout stays source only).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

SOURCE = Path("builder/cli/native_client.c")
BINARY = "native_client"  # builder.cli.client.NATIVE_CLIENT
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=c11"]


class BuildPyWithNativeClient(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "builder" / "cli" / BINARY
        compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        command = [*compiler, *CFLAGS, "-o", str(target), str(SOURCE)]
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            target.unlink(missing_ok=True)
            self.warn(f"no native client in this build ({err}): `builder` runs Python only")


class PlatformWheelWhenNative(bdist_wheel):
    def run(self) -> None:
        self.run_command("build")
        build_lib = self.get_finalized_command("build_py").build_lib
        self.root_is_pure = not (Path(build_lib) / "builder" / "cli" / BINARY).exists()
        if not self.root_is_pure:  # the package goes to platlib, the wheel's root
            self.distribution.has_ext_modules = lambda: True  # type: ignore[method-assign]
        super().run()

    def get_tag(self) -> tuple[str, str, str]:
        python, abi, platform = super().get_tag()
        return (python, abi, platform) if self.root_is_pure else ("py3", "none", platform)


setup(cmdclass={"build_py": BuildPyWithNativeClient, "bdist_wheel": PlatformWheelWhenNative})
