"""`python -m edge_ocr` runs the CLI."""

import sys

from edge_ocr.cli import main

sys.exit(main())
