"""Compile every Triton kernel for A100 (sm_80) and H100/H200 (sm_90) on this machine, with no GPU: registers,
spills and shared memory of each variant a launch can make (see kernels/aot.py).

    python bench/kernel_compile.py                    # the full matrix: 4 kernels x 4 dtypes x modes x tiles x 2 GPUs
    python bench/kernel_compile.py --widest_only      # the widest tile of each (what tests/test_kernels.py compiles)

Writes out/kernel_compile/table.md and results.json. A spill at the default tiles is a defect: the bench prints
each one and exits with code 1.
"""
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from kernels.aot import ARCHS, compile_variant, launch_variants
from nanoreason.config import ConfigError, parse_args, run_main
from nanoreason.report import write_table


@dataclass
class CompileConfig:
    widest_only: bool = False
    jobs: int = os.cpu_count() or 1      # compiles at once (each is one process: Triton's passes, then ptxas)
    out_dir: str = "out/kernel_compile"


def compile_both(v) -> dict:
    """One table row: the variant compiled for every target."""
    r = {"kernel": v.kernel, "dtype": v.dtype, "mode": v.mode, "block": f"{v.block_n}x{v.block_v}",
         "warps": v.num_warps, "aligned": v.aligned}
    for arch in ARCHS:
        got = compile_variant(v, arch)
        r.update({f"sm{arch}_{k}": got[k] for k in ("registers", "spills", "shared", "seconds")})
    return r


def main(c: CompileConfig):
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise ConfigError("TRITON_INTERPRET=1 is set: this bench compiles for a GPU, not for the interpreter; "
                          "run it without that variable")
    variants = launch_variants(c.widest_only)
    with ProcessPoolExecutor(max(1, c.jobs)) as pool:
        rows = list(tqdm(pool.map(compile_both, variants), total=len(variants), desc="compile", unit="variant"))
    os.makedirs(c.out_dir, exist_ok=True)
    with open(os.path.join(c.out_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    head = " | ".join(f"sm_{a} regs | sm_{a} spills (B) | sm_{a} shared (B)" for a in ARCHS)
    lines = [f"| kernel | dtype | mode | tile | warps | N, V, stride ÷ 16 | {head} |",
             "|" + "---|" * (6 + 3 * len(ARCHS))]
    for r in rows:
        cells = " | ".join(f"{r[f'sm{a}_registers']} | {r[f'sm{a}_spills']} | {r[f'sm{a}_shared']}" for a in ARCHS)
        lines.append(f"| `{r['kernel']}` | {r['dtype']} | {r['mode']} | {r['block']} | {r['warps']} | "
                     f"{'yes' if r['aligned'] else 'no'} | {cells} |")
    seconds = sum(r[f"sm{a}_seconds"] for r in rows for a in ARCHS)
    spilled = [(r, a) for r in rows for a in ARCHS if r[f"sm{a}_spills"]]
    lines += ["", f"{len(rows)} variants x {len(ARCHS)} targets: {seconds:.0f} s of compiling; "
              f"{len(spilled)} spill{'s' if len(spilled) != 1 else ''}; most registers a thread: "
              f"{max(r[f'sm{a}_registers'] for r in rows for a in ARCHS)}."]
    write_table(os.path.join(c.out_dir, "table.md"), lines)
    for r, a in spilled:
        print(f"spill: {r['kernel']} {r['dtype']} {r['mode']} {r['block']}{' aligned' if r['aligned'] else ''} on "
              f"sm_{a}: {r[f'sm{a}_spills']} bytes", file=sys.stderr)
    if spilled:
        sys.exit(1)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(CompileConfig)))
