"""Compile the Triton kernels ahead of time for a GPU, on a machine without one (no GPU, no interpreter).

    for v in launch_variants():                       # every specialisation the launches in logprobs.py / kl.py make
        report = compile_variant(v, arch=90)          # -> {"registers", "spills", "shared", "seconds"}

The interpreter (TRITON_INTERPRET=1) runs a kernel as numpy and accepts programs a real compile rejects; it also says
nothing about registers. A real compile (Triton -> PTX -> ptxas -> cubin) needs only the target, not the device.

A variant is what a launch specialises on: the input dtype (fp32, bf16, fp16, fp64; fp64 computes in fp64), the
mode (entropy on or off; the KL kind), the tile and warps `triton_blocks` chooses on a GPU for a vocabulary of V
(one row; 16 ... 4096 columns, 2048 in fp64), and whether the row count, V and the row stride are multiples of 16
(Triton then vectorises the loads: V = 32768 or 50304, against 50257). Pointers are 16-byte aligned, as every fresh
torch tensor is. Registers and spills are ptxas's own report (ptxas -v), which Triton prints on request.
"""
from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass

DTYPES = ("fp32", "bf16", "fp16", "fp64")                                   # the logits' dtypes, as Triton names them
TILE_COLUMNS = tuple(2**i for i in range(4, 13))                            # vocabularies 16 ... 4096 (and larger)
ARCHS = (80, 90)                                                            # A100, H100/H200


@dataclass(frozen=True)
class Variant:
    kernel: str                 # "logprobs._fwd", ...
    dtype: str                  # the logits' dtype
    mode: str                   # "entropy" / "plain", or the KL kind
    block_n: int
    block_v: int
    num_warps: int
    aligned: bool               # N, V and the stride are multiples of 16

    def label(self) -> str:
        return (f"{self.kernel} {self.dtype} {self.mode} {self.block_n}x{self.block_v} w{self.num_warps}"
                f"{' aligned' if self.aligned else ''}")


def _kernel(name: str):
    from kernels import triton_kl, triton_logprobs
    module, fn = name.split(".")
    return getattr({"logprobs": triton_logprobs, "kl": triton_kl}[module], fn)


def _signature(v: Variant) -> tuple[dict, dict]:
    """(signature, constexprs) of the launch in kernels/logprobs.py or kernels/kl.py for this variant."""
    from kernels.kl import KINDS
    x = "*" + v.dtype
    c = "*fp64" if v.dtype == "fp64" else "*fp32"                 # per-row outputs: the compute dtype
    ints = {"N": "i32", "V": "i32", "stride": "i32"}
    blocks = {"F64": v.dtype == "fp64", "BLOCK_N": v.block_n, "BLOCK_V": v.block_v}
    if v.kernel == "logprobs._fwd":
        sig = {"X": x, "Y": "*i64", "OUT": c, "LSE": c, "ENT": c}
    elif v.kernel == "logprobs._bwd":
        sig = {"X": x, "Y": "*i64", "G": c, "LSE": c, "DX": x, "GH": c, "ENT": c}
    elif v.kernel == "kl._kl_fwd":
        sig = {"S": x, "T": x, "OUT": c, "LSE_S": c, "LSE_T": c, "AUX": c}
    else:
        sig = {"S": x, "T": x, "G": c, "LSE_S": c, "LSE_T": c, "AUX": c, "DS": x}
    sig.update(ints)
    if v.kernel.startswith("logprobs"):
        sig.update(inv_t="fp32", ignore_index="i32")
        const = dict(blocks, ENTROPY=v.mode == "entropy")
    else:
        sig.update(inv_t="fp32", beta="fp32", log_beta="fp32", log_1mbeta="fp32")
        const = dict(blocks, KIND=KINDS.index(v.mode))
    sig.update({k: "constexpr" for k in const})
    return sig, const


def launch_variants(widest_only: bool = False) -> list[Variant]:
    """Every (kernel, dtype, mode, tile) a launch makes on a GPU with `default_tile`, for vocabularies of 16, 32, ...
    4096 columns and more (one per tile it can pick), or with `widest_only` the widest tile alone."""
    from kernels.kl import KINDS
    from kernels.logprobs import default_tile, num_warps
    out = []
    for kernel, modes in (("logprobs._fwd", ("plain", "entropy")), ("logprobs._bwd", ("plain", "entropy")),
                          ("kl._kl_fwd", KINDS), ("kl._kl_bwd", KINDS)):
        for dtype in DTYPES:
            f64 = dtype == "fp64"
            tiles = sorted({default_tile(V, f64, interpreted=False) for V in TILE_COLUMNS})
            for mode in modes:
                for bn, bv in tiles[-1:] if widest_only else tiles:
                    for aligned in (False, True):
                        out.append(Variant(kernel, dtype, mode, bn, bv, num_warps(bn, bv, f64), aligned))
    return out


def compile_variant(v: Variant, arch: int = 90) -> dict:
    """Compile `v` for sm_<arch> -> {"registers", "spills" (bytes stored a thread), "shared" (bytes), "seconds"}.
    Raises triton's own error if the kernel does not compile for that target."""
    from kernels.logprobs import require_triton
    require_triton((3, 4), "ahead-of-time compiles (triton.knobs, GPUTarget)")
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = _kernel(v.kernel)
    sig, const = _signature(v)
    hinted = [k for k, t in sig.items() if t.startswith("*") or v.aligned and k in ("N", "V", "stride")]
    aligned = {(fn.arg_names.index(k),): [["tt.divisibility", 16]] for k in hinted}
    log = io.StringIO()
    start = time.perf_counter()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True                           # print ptxas -v: registers and spills
        knobs.compilation.always_compile = True                      # a cached kernel would print nothing
        compiled = triton.compile(ASTSource(fn, sig, constexprs=const, attrs=aligned),
                                  target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps})
    report = log.getvalue()
    regs = re.findall(r"Used (\d+) registers", report)
    spills = re.findall(r"(\d+) bytes spill stores", report)
    if not regs:
        raise RuntimeError(f"{v.label()} sm_{arch}: ptxas printed no register count:\n{report}")
    return {"registers": max(map(int, regs)), "spills": max(map(int, spills or ["0"])),
            "shared": int(compiled.metadata.shared), "seconds": time.perf_counter() - start}
