"""Build script: compiles every ``proximadb/**/*.pyx`` into an extension module.

Switches (environment variables):
  PROXIMADB_DEBUG=1     line tracing, C asserts, -O0 -g
  PROXIMADB_ANNOTATE=1  write Cython HTML annotation next to each .pyx
  PROXIMADB_BUILD_ONLY=GLOB[,GLOB]  build only matching modules, for development:
      PROXIMADB_BUILD_ONLY='proximadb.codec.*' python setup.py build_ext --inplace
No -march=native: SIMD variants are compiled with per-function target
attributes (see pxd/distance.h, pxd/crc32c.h) and picked at run time.
pxd/ holds only C headers (include_dirs); .pxd declarations are in the package and
cimported by their full name (from proximadb.codec._avro cimport ...).

gRPC code: build_py and build_ext first run grpc_tools.protoc on
proto/proximadb/v1/proximadb.proto into proximadb/api/grpc/_generated/ (gitignored;
see proximadb/api/grpc/codegen.py), so `pip install .`, wheels and
`python setup.py build_ext --inplace` all have it; build_py then packages it.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
DEBUG = os.environ.get("PROXIMADB_DEBUG") == "1"
ANNOTATE = os.environ.get("PROXIMADB_ANNOTATE") == "1"
ONLY = [g for g in os.environ.get("PROXIMADB_BUILD_ONLY", "").split(",") if g]

COMPILE_ARGS = ["-O0", "-g"] if DEBUG else ["-O2"]
COMPILE_ARGS += ["-Wall", "-Wno-unused-function", "-Wno-unreachable-code", "-fopenmp"]
LINK_ARGS = ["-fopenmp"]
MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    MACROS.append(("CYTHON_TRACE_NOGIL", "1"))
else:
    MACROS.append(("NDEBUG", "1"))


def extensions() -> list[Extension]:
    exts = []
    for pyx in sorted(ROOT.glob("proximadb/**/*.pyx")):
        rel = pyx.relative_to(ROOT)
        module = ".".join(rel.with_suffix("").parts)
        if ONLY and not any(fnmatch.fnmatch(module, g) for g in ONLY):
            continue
        exts.append(
            Extension(
                module,
                [str(rel)],
                include_dirs=["pxd", numpy.get_include()],
                extra_compile_args=COMPILE_ARGS,
                extra_link_args=LINK_ARGS,
                define_macros=MACROS,
            )
        )
    return exts


GENERATED_PACKAGE = "proximadb.api.grpc._generated"


def generate_grpc() -> None:
    """protoc -> proximadb/api/grpc/_generated/ in the source tree (only files whose content changed)."""
    spec = importlib.util.spec_from_file_location("_proximadb_codegen", ROOT / "proximadb/api/grpc/codegen.py")
    assert spec is not None and spec.loader is not None
    codegen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codegen)
    for path in codegen.generate(ROOT):
        print(f"generated {path.relative_to(ROOT)}")


class BuildPy(build_py):
    """build_py that generates the gRPC modules first, so they are packaged like any source file."""

    def run(self) -> None:
        generate_grpc()
        # On a fresh checkout find_packages() ran before the package existed (and egg_info,
        # which runs first, refuses a listed package directory that does not exist yet).
        if GENERATED_PACKAGE not in self.packages:
            self.packages.append(GENERATED_PACKAGE)
        super().run()


class BuildExt(build_ext):
    """build_ext that cythonizes late so numpy/Cython come from the build env."""

    def finalize_options(self) -> None:
        directives = {
            "language_level": "3",
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG,
            "embedsignature": True,
        }
        if DEBUG:
            directives["linetrace"] = True
        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules,
            compiler_directives=directives,
            include_path=["."],  # cimports are package-qualified (proximadb.codec._cursor, ...)
            annotate=ANNOTATE,
            nthreads=os.cpu_count() or 1,
        )
        super().finalize_options()

    def run(self) -> None:
        generate_grpc()  # also for `build_ext --inplace`, which does not run build_py
        super().run()


setup(
    packages=[*find_packages(include=["proximadb", "proximadb.*"]), "proximadb.schemas"],
    package_dir={"proximadb.schemas": "schemas"},
    package_data={
        "proximadb": ["py.typed", "**/*.pyi", "**/*.pxd", "systemd/*", "man/*", "dashboard/static/*"],
        "proximadb.schemas": ["*/*.avsc"],
    },
    # Man pages (generated into man/ by proximadb/cli/manpages.py) go to <prefix>/share/man/man1: `man proximadb`.
    data_files=[("share/man/man1", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("man/*.1")))],
    ext_modules=extensions(),
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
    zip_safe=False,
)
