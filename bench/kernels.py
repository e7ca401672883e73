"""python -m bench.kernels: see pytransformer/bench/kernels.py (also
`pytransformer bench kernels`)."""
import sys

from pytransformer.bench.kernels import main

if __name__ == "__main__":
    sys.exit(main())
