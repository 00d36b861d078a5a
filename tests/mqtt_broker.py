"""The test broker lives in the package (edge_ocr.bench.devbroker) so the daemon benchmark can use it too."""

from edge_ocr.bench.devbroker import *  # noqa: F403
from edge_ocr.bench.devbroker import HOST, Mosquitto, Subscriber, free_port, make_tls, wait_until  # noqa: F401
