"""The nvcc flag allow-list and the #include check (issue 10, item 2): builds are untrusted code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from kda_mcp.tools.compile.flags import MAX_FLAGS, check_flags, check_includes
from kda_mcp.tools.errors import InvalidArgumentError

# Every one of these was accepted on main, or would run a program / read a file of the caller's choosing.
ATTACKS: list[tuple[list[str], str]] = [
    (["-Xcompiler=-specs=../src/evil.specs"], "can run programs"),
    (["-Xcompiler", "-specs=evil.specs"], "can run programs"),
    (["--compiler-options=-O3,-specs=evil.specs"], "can run programs"),
    (["--options-file=/etc/passwd"], "reads arbitrary files"),
    (["--options-file", "/etc/passwd"], "reads arbitrary files"),
    (["-optf=/etc/passwd"], "reads arbitrary files"),
    (["-I/etc"], "paths outside the solution"),
    (["-I", "/etc"], "paths outside the solution"),
    (["--include-path=/etc"], "paths outside the solution"),
    (["-isystem/etc"], "paths outside the solution"),
    (["-include", "/etc/passwd"], "paths outside the solution"),
    (["--pre-include=/etc/passwd"], "paths outside the solution"),
    (["-L/tmp", "-lfoo"], "paths outside the solution"),
    (["--compiler-bindir=/tmp/x"], "host compiler"),
    (["-ccbin"], "host compiler"),
    (["-ccbin=/tmp/x"], "host compiler"),
    (["-Xlinker"], "linker"),
    (["-Xlinker=-plugin=/tmp/x.so"], "linker"),
    (["--linker-options=--plugin,/tmp/x.so"], "linker"),
    (["-Xnvlink=--options-file=/etc/passwd"], "linker"),
    (["-Xcompiler=-fplugin=/tmp/evil.so"], "plugin"),
    (["-Xcompiler=-wrapper,/bin/sh,-c,touch,/tmp/pwned"], "runs a program"),
    (["-Xcompiler=-wrapper,/bin/sh,-c,touch /tmp/pwned"], "one option"),
    (["-Xcompiler=-wrapper,gdb,--args"], "runs a program"),
    (["-Xcompiler=-B/tmp/evil"], "programs the compiler runs"),
    (["-Xcompiler=-Wl,-rpath,/tmp"], "linker"),
    (["@file"], "arbitrary file"),
    (["@/etc/passwd"], "arbitrary file"),
    (["-Xcompiler=@/etc/passwd"], "arbitrary file"),
    (["-Xptxas=@/etc/passwd"], "arbitrary file"),
    (["-Xptxas=--options-file=/etc/passwd"], "arbitrary file"),
    (["--run"], "run it"),
    (["-run"], "run it"),
    (["-odir"], "run it"),
    (["-odir=/tmp"], "run it"),
    (["-o", "/tmp/x"], "run it"),
    (["-o/tmp/x"], "run it"),
    (["-c"], "run it"),
    (["-E"], "run it"),
    (["-MF/tmp/x"], "run it"),
    (["--keep", "--keep-dir=/tmp"], "run it"),
    (["-save-temps"], "run it"),
    (["-arch=sm_90"], "architecture"),
    (["-gencode=arch=compute_90,code=sm_90"], "architecture"),
    (["-DX=$(id)"], "macro"),
    (["-DX=$(touch /tmp/pwned)"], "one option"),
    (["-DX=`id`"], "macro"),
    (["-DX=a;b"], "macro"),
    (["-D", "X"], "macro"),
    (["-Xcudafe=--something"], "internal compiler stage"),
    (["-Xptxas"], "needs a value"),
    (["-Xcompiler="], "no host-compiler option"),
    (["-O3 -ccbin=/tmp/x"], "one option"),
    (["-O3\x00"], "one option"),
    (["--shared"], "run it"),
    (["-Xcompiler=-fprofile-use=/etc/passwd"], "files of its own"),
    (["-Xcompiler=-imacros/etc/passwd"], "paths outside the solution"),
    (["--something-new-in-cuda-14"], "allow-list"),
]


@pytest.mark.parametrize("flags,why", ATTACKS, ids=[" ".join(a) for a, _ in ATTACKS])
def test_dangerous_flags_are_refused_with_a_reason(flags: list[str], why: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_flags(flags)
    message = str(caught.value)
    assert why in message
    assert "refused" in message and "-maxrregcount=128" in message  # says why, and what is allowed


def test_refusal_names_the_flag() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'-Xcompiler=-specs=\.\./src/evil\.specs'.*-Xcompiler=-specs=\.\./src/evil\.specs can run programs"):
        check_flags(["-O3", "-Xcompiler=-specs=../src/evil.specs"])
    with pytest.raises(InvalidArgumentError, match="'--options-file=/etc/passwd' is refused: reads arbitrary files"):
        check_flags(["--options-file=/etc/passwd"])


# Each of these (a two-token form as two list items) was compiled by nvcc 13 on this project's CI
# machine with `nvcc -c t.cu <flag>`; see test_allowed_flags_compile.
NORMAL: list[list[str]] = [
    ["-O0"], ["-O3"], ["--optimize=2"], ["-maxrregcount=64"], ["--maxrregcount=255"], ["-maxrregcount", "64"],
    ["--use_fast_math"], ["-use_fast_math"], ["-lineinfo"], ["--generate-line-info"], ["-G"], ["--device-debug"],
    ["-DBLOCK=128"], ["-DX"], ["-DS=0.5f"], ["-DNEG=-1"], ["--define-macro=A=1"], ["-UX"], ["--undefine-macro=X"],
    ["-std=c++17"], ["-std=c++20"], ["--std=c++17"], ["-std", "c++20"],
    ["--expt-relaxed-constexpr"], ["-expt-relaxed-constexpr"], ["--expt-extended-lambda"], ["-expt-extended-lambda"],
    ["--extended-lambda"], ["--restrict"], ["-restrict"], ["--extra-device-vectorization"], ["-extra-device-vectorization"],
    ["-res-usage"], ["--resource-usage"], ["-ftz=true"], ["--ftz=false"], ["-prec-div=false"], ["--prec-div=true"],
    ["-prec-sqrt=false"], ["--prec-sqrt=true"], ["-fmad=false"], ["--fmad=true"], ["-w"], ["--disable-warnings"],
    ["-diag-suppress=177"], ["--diag-suppress=177,550"],
    ["-Xptxas=-v"], ["-Xptxas", "-v"], ["--ptxas-options=-v"], ["-Xptxas=-O3"], ["-Xptxas=--verbose,--opt-level=2"],
    ["-Xptxas=--allow-expensive-optimizations=true"], ["-Xptxas=-allow-expensive-optimizations=true"],
    ["-Xptxas=--warn-on-spills"], ["-Xptxas=-warn-spills"],
    ["-Xptxas=--warn-on-local-memory-usage"], ["-Xptxas=-warn-lmem-usage"], ["-Xptxas=-dlcm=ca"], ["-Xptxas=-dlcm=cg"],
    ["-Xptxas=--def-load-cache=cs"], ["-Xptxas=-dscm=wt"], ["-Xptxas=--def-store-cache=cg"], ["-Xptxas=-v,-O3,-dlcm=cg"],
    ["-Xcompiler=-O2"], ["-Xcompiler", "-O3"], ["--compiler-options=-Wall,-Wextra"], ["-Xcompiler=-Wno-unused-function"],
    ["-Xcompiler=-funroll-loops"], ["-Xcompiler=-ffast-math"], ["-Xcompiler=-fno-strict-aliasing"],
]


@pytest.mark.parametrize("flags", NORMAL, ids=[" ".join(f) for f in NORMAL])
def test_normal_flags_are_accepted(flags: list[str]) -> None:
    assert check_flags(flags) == flags


def test_a_typical_combination_and_the_count_limit() -> None:
    flags = ["-O3", "-maxrregcount=128", "--use_fast_math", "-lineinfo", "-DBLOCK_M=128", "-DBLOCK_N=64",
             "-std=c++17", "--expt-relaxed-constexpr", "-Xptxas=-v,--warn-on-spills", "-Xcompiler=-O3,-Wall"]
    assert check_flags(flags) is flags
    assert check_flags([]) == []
    with pytest.raises(InvalidArgumentError, match="At most"):
        check_flags(["-O3"] * (MAX_FLAGS + 1))
    with pytest.raises(InvalidArgumentError, match="characters"):
        check_flags(["-D" + "A" * 300])
    with pytest.raises(InvalidArgumentError, match="not an allowed value"):
        check_flags(["-maxrregcount", "9999"])
    with pytest.raises(InvalidArgumentError, match="not an allowed value"):
        check_flags(["-std", "c++03"])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
def test_allowed_flags_compile(tmp_path: Path) -> None:
    """A sample of the allow-list really is accepted by this machine's nvcc (one build for many flags)."""
    (tmp_path / "t.cu").write_text("__global__ void k(float* x) { x[threadIdx.x] *= 2.0f; }\n")
    flags = ["-O3", "-maxrregcount=64", "--use_fast_math", "-lineinfo", "-DBLOCK=128", "-UX", "-std=c++17",
             "--expt-relaxed-constexpr", "--extended-lambda", "--restrict", "-res-usage", "-ftz=true", "-prec-div=false",
             "-fmad=true", "-diag-suppress=177", "-Xptxas=-v,-O3,--warn-on-spills,-dlcm=cg",
             "-Xptxas=--allow-expensive-optimizations=true", "-Xcompiler=-O3,-Wall,-Wno-unused-function,-fno-strict-aliasing"]
    check_flags(flags)
    done = subprocess.run(["nvcc", "-c", "t.cu", "-o", "t.o", *flags], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# --- #include ------------------------------------------------------------------------------------

BAD_SOURCES: list[tuple[str, str, str]] = [
    ('#include "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ("#include </etc/passwd>\n", "kernel.cu:1", "absolute path"),
    ('int a;\n  #  include "../../etc/passwd"\n', "kernel.cu:2", "'..'"),
    ('#include "sub/../../x.h"\n', "kernel.cu:1", "'..'"),
    ('#include "~root/.ssh/id_rsa"\n', "kernel.cu:1", "home folder"),
    ('#include_next "/etc/shadow"\n', "kernel.cu:1", "absolute path"),
    ('#import "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ('#embed "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ('%:include "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ('??=include "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ('#inc\\\nlude "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ('#/* hidden */include "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ('x;\n#/* a\n b */include "/etc/passwd"\n', "kernel.cu:2", "absolute path"),
    ('#include /* c */ "/etc/passwd"\n', "kernel.cu:1", "absolute path"),
    ('const char* a = "/*";\n#include "/etc/passwd"\nconst char* b = "*/";\n', "kernel.cu:2", "absolute path"),
    ('#define P "/etc/passwd"\n#include P\n', "kernel.cu:2", "computed include"),
    ('#if __has_include("/etc/passwd")\n#endif\n', "kernel.cu:1", "absolute path"),
    ('asm(".incbin \\"/etc/passwd\\"");\n', "kernel.cu:1", ".incbin"),
    ('asm("\\t.include \\"/etc/passwd\\"");\n', "kernel.cu:1", ".include"),
    ('asm(".inc" "bin \\"/etc/passwd\\"");\n', "kernel.cu:1", ".incbin"),
]


@pytest.mark.parametrize("source,where,why", BAD_SOURCES, ids=[s.splitlines()[-1][:40] for s, _, _ in BAD_SOURCES])
def test_includes_from_outside_are_refused(source: str, where: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_includes({"kernel.cu": source})
    message = str(caught.value)
    assert where in message and why in message, message


def test_include_check_names_every_file_and_line() -> None:
    files = {
        "kernel.cu": '#include "util.cuh"\n#include <cuda_bf16.h>\n\n#include "/etc/passwd"\n',
        "util.cuh": "#pragma once\n#include \"../secret.h\"\n",
        "binding.py": "# include the bias\nimport torch\n",
    }
    with pytest.raises(InvalidArgumentError) as caught:
        check_includes(files)
    message = str(caught.value)
    assert "kernel.cu:4" in message and "util.cuh:2" in message and "binding.py" not in message


@pytest.mark.parametrize("included", ["x.txt", "sub/x.inc", "data"])
def test_a_computed_include_in_a_file_c_includes_by_name_is_refused(included: str) -> None:
    """The preprocessor reads an included file as C whatever its suffix: a macro defined in the .cu
    and used in a .txt it includes would otherwise name any file."""
    files = {"kernel.cu": f'#define P "/etc/passwd"\n#include "{included}"\n', included: "#include P\n"}
    with pytest.raises(InvalidArgumentError, match="computed include"):
        check_includes(files)


def test_normal_includes_pass() -> None:
    check_includes(
        {
            "kernel.cu": (
                '#include "util.cuh"\n#include "kernels/tile.cuh"\n#include <cuda_bf16.h>\n#include <cute/tensor.hpp>\n'
                "#include <torch/extension.h>\n  # include <cstdint>  // ok\n#include \"cuda_runtime.h\"\n"
                '#if __has_include(<cuda_fp8.h>)\n#include <cuda_fp8.h>\n#endif\n'
                "struct S { int include; }; int f(S s) { return s.include; }\n"
                'asm volatile("mov.u32 %0, %%laneid;" : "=r"(x));\n'
            ),
            "kernels/tile.cuh": '#pragma once\n#include "common.cuh"\n',
            "main.py": "# include the bias in the output\n# import order matters\nimport torch\n",
            "notes.txt": "#include is how C does it\n",
        }
    )
