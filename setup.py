"""Build pytransformer: the plain-C core in csrc/ plus the Cython bindings.

Typed C files (those that include pt_real.h) are compiled twice, once with
-DPT_DTYPE=32 and once with -DPT_DTYPE=64; the others once. The objects are
linked into the single extension pytransformer._core; pytransformer._blas is
a tiny extension that only reads BLAS function pointers out of SciPy.

Environment:
  PT_NATIVE=1      add -march=native (when the compiler accepts it)
  PT_NO_OPENMP=1   build without OpenMP even when the compiler has it
"""
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
CSRC = "csrc"


def c_sources():
    """(typed, common) lists of csrc/*.c, relative to the project root."""
    typed, common = [], []
    for path in sorted((HERE / CSRC).glob("*.c")):
        rel = f"{CSRC}/{path.name}"
        (typed if '#include "pt_real.h"' in path.read_text() else common).append(rel)
    return typed, common


def compiler_accepts(compiler_cmd, flags, link_flags=()):
    """True when `compiler_cmd` compiles and links a tiny program with flags."""
    prog = "#include <omp.h>\nint main(void){return omp_get_max_threads()>0?0:1;}\n" \
        if "-fopenmp" in flags else "int main(void){return 0;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(prog)
        cmd = list(compiler_cmd) + list(flags) + [str(src), "-o", str(Path(tmp) / "probe")] + list(link_flags)
        try:
            return subprocess.run(cmd, capture_output=True).returncode == 0
        except OSError:
            return False


class BuildExt(build_ext):
    """Probe flags, compile csrc/ (typed files twice), link into _core."""

    def build_extensions(self):
        cc = self.compiler.compiler_so[:1] if hasattr(self.compiler, "compiler_so") else ["cc"]
        cflags = ["-O3", "-std=c99", "-fno-strict-aliasing"]
        ldflags = []
        self.pt_openmp = False
        if not os.environ.get("PT_NO_OPENMP") and compiler_accepts(cc, ["-fopenmp"], ["-fopenmp"]):
            cflags.append("-fopenmp")
            ldflags.append("-fopenmp")
            self.pt_openmp = True
        elif compiler_accepts(cc, ["-fopenmp-simd"]):
            # No threads, but `#pragma omp simd` still guides vectorisation.
            cflags.append("-fopenmp-simd")
        if os.environ.get("PT_NATIVE") and compiler_accepts(cc, ["-march=native"]):
            cflags.append("-march=native")
        print(f"pytransformer: cflags {' '.join(cflags)}", file=sys.stderr)

        typed, common = c_sources()
        objects = []
        for tag, sources, macros in (("f32", typed, [("PT_DTYPE", "32")]),
                                     ("f64", typed, [("PT_DTYPE", "64")]),
                                     ("common", common, [])):
            out = os.path.join(self.build_temp, "csrc_" + tag)
            objects += self.compiler.compile(
                sources, output_dir=out, macros=macros, include_dirs=[CSRC],
                extra_postargs=cflags, depends=[f"{CSRC}/pt.h", f"{CSRC}/pt_kernels.h",
                                                f"{CSRC}/pt_real.h", f"{CSRC}/pt_omp.h"])
        build_flags = " ".join(cflags)
        for ext in self.extensions:
            if ext.name == "pytransformer._core":
                ext.extra_objects = objects
                ext.extra_compile_args = cflags
                ext.extra_link_args = ldflags
                ext.define_macros = list(ext.define_macros or []) + [
                    ("PT_BUILD_FLAGS", '"%s"' % build_flags),
                    ("PT_BUILD_COMPILER", '"%s"' % " ".join(cc)),
                ]
            else:
                ext.extra_compile_args = ["-O2"]
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize

    exts = [
        # depends: the csrc files are linked as extra_objects, which
        # build_ext does not watch; listing them makes a C edit relink _core.
        Extension("pytransformer._core", ["pytransformer/_core.pyx"],
                  include_dirs=[CSRC, np.get_include()],
                  depends=sorted(str(p.relative_to(HERE)) for p in (HERE / CSRC).glob("*.[ch]"))
                  + sorted(str(p.relative_to(HERE)) for p in (HERE / "pytransformer").glob("*.pxi")),
                  define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]),
        Extension("pytransformer._blas", ["pytransformer/_blas.pyx"]),
    ]
    return cythonize(exts, language_level=3,
                     compiler_directives={"boundscheck": False, "wraparound": False})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
