"""`python -m edge_ocr.bench`: the OCR bench (`edge-ocr bench`)."""

import sys

from edge_ocr.bench.ocr import main

sys.exit(main())
