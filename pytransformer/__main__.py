"""`python -m pytransformer` is the `pytransformer` command."""
import os
import sys

try:
    from pytransformer.cli import program
except KeyboardInterrupt:          # Ctrl-C during start-up: no traceback
    print("pytransformer: interrupted", file=sys.stderr)
    sys.stderr.flush()
    os._exit(130)

sys.exit(program())
