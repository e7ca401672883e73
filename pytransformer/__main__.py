"""`python -m pytransformer` is the `pytransformer` command."""
import sys

try:
    from pytransformer.cli import main
except KeyboardInterrupt:          # Ctrl-C during start-up: no traceback
    print("pytransformer: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
