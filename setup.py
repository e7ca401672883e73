"""Build pytransformer: the plain-C core in csrc/ plus the Cython bindings.

Typed C files (those that include pt_real.h) are compiled twice, once with
-DPT_DTYPE=32 and once with -DPT_DTYPE=64; the others once. The objects are
linked into the single extension pytransformer._core; pytransformer._blas is
a tiny extension that only reads BLAS function pointers out of SciPy.

The extensions are linked stripped (-s) on Linux unless the build is a
debug build (`build_ext --debug`, or PT_DEBUG=1).

Environment:
  PT_NATIVE=1      add -march=native (when the compiler accepts it)
  PT_NO_OPENMP=1   build without OpenMP even when the compiler has it
  PT_DEBUG=1       keep the symbols and debug information (no -s)
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

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


NO_COMPILER = ("pytransformer needs a C compiler (gcc or clang) to build its core: "
               "{what}; install one (Debian/Ubuntu: apt install gcc) or set CC")


def check_compiler(compiler_cmd):
    """None when the first word of `compiler_cmd` is a program that runs,
    else the one-line error to stop the build with."""
    if not compiler_cmd:
        return NO_COMPILER.format(what="no compiler is configured")
    exe = compiler_cmd[0]
    if shutil.which(exe) is None:
        return NO_COMPILER.format(what=f"{exe!r} was not found")
    try:
        subprocess.run([exe, "--version"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return NO_COMPILER.format(what=f"{exe!r} does not run ({e})")
    return None


def strip_flags(debug, platform=sys.platform):
    """Link flags that drop the symbol table and debug information from the
    extensions (most of an unstripped _core's size): -s with the GNU and
    LLVM linkers on Linux; none for a debug build or elsewhere."""
    return ["-s"] if platform.startswith("linux") and not debug else []


class BuildExt(build_ext):
    """Probe flags, compile csrc/ (typed files twice), link into _core."""

    def build_extensions(self):
        cc = self.compiler.compiler_so[:1] if hasattr(self.compiler, "compiler_so") else ["cc"]
        problem = check_compiler(cc)
        if problem:
            sys.exit(problem)
        cflags = ["-O3", "-std=c99", "-fno-strict-aliasing"]
        ldflags = []
        strip = strip_flags(self.debug or bool(os.environ.get("PT_DEBUG")))
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
                ext.extra_link_args = ldflags + strip
                ext.define_macros = list(ext.define_macros or []) + [
                    ("PT_BUILD_FLAGS", '"%s"' % build_flags),
                    ("PT_BUILD_COMPILER", '"%s"' % " ".join(cc)),
                ]
            else:
                ext.extra_compile_args = ["-O2"]
                ext.extra_link_args = strip
        super().build_extensions()


def extensions():
    """The two extensions, cythonized (the .pyx -> .c step runs here)."""
    import numpy as np
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


if __name__ == "__main__":           # pip's build backend runs this file as __main__
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
