"""`python -m pytransformer` is the `pytransformer` command."""
import sys

from pytransformer.cli import main

sys.exit(main())
