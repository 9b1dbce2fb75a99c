"""Peak memory of decoding a decompression-bomb-like result: a 260 KiB RGBA PNG of 4096x4096, N decodes at once.

    python bench/decode_memory.py [N]      # prints: png bytes, peak MiB above the start, seconds

Measured in this fresh process with /proc/self/status (VmHWM reset through /proc/self/clear_refs), so the figure is
the decodes' own peak. tests/test_attack_client.py runs it for 1 and 8 (a turnaround's worth).
"""

import struct
import sys
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.core import codec  # noqa: E402


def png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" + bytes((x * 7) & 255 for x in range(w * 4))  # RGBA, alpha varies: compositing happens
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    data = png(4096, 4096)
    codec.decode(png(8, 8))  # warm up: imports, the decode pool's threads
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = status_kb("VmRSS")
    shapes: list = []
    threads = [threading.Thread(target=lambda: shapes.append(codec.decode(data).shape)) for _ in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(shapes) != n:
        raise SystemExit("a decode failed")
    print(len(data), (status_kb("VmHWM") - base) // 1024, round(time.monotonic() - start, 2))


if __name__ == "__main__":
    main()
