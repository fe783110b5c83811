"""Where the time goes, measured side by side in one process (medians over repeats after warm-up).

    python scripts/bench.py                      # the full run; writes docs/benchmarks.md + .json
    python scripts/bench.py --quick --out /tmp/b # a seconds-long smoke run
    python scripts/bench.py --gpu                # on a GPU host: GPT-2 124M, bf16, compile
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from tinygpt.bench import ROOT, gpu_section, run, write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="where benchmarks.md/.json go")
    ap.add_argument("--gpu", action="store_true",
                    help="only the GPU section: GPT-2 124M shape, bf16, compile, flash attention")
    ap.add_argument("--gpu-device", default="cuda", help=argparse.SUPPRESS)  # cpu: test the code
    args = ap.parse_args()
    out = Path(args.out)
    if not args.gpu:
        write(run(args.quick), out)
        return
    if args.gpu_device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --gpu needs a CUDA device and none is visible (run it on a GPU host)")
    r = gpu_section(args.gpu_device, args.quick)
    print(json.dumps(r, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks_gpu.json").write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
