"""Extract libtensorflow's shared libraries and C API headers from a TensorFlow wheel.

Usage: extract-libtensorflow.py WHEEL DEPS_DIR [--headers-only]
Writes DEPS_DIR/lib/libtensorflow_{cc,framework}.so.2 and DEPS_DIR/include/... (only the header
trees the C API and its kernel API need: tensorflow/c, tensorflow/core/platform, the pluggable
device's rendezvous C API that tensorflow/c/kernels.h includes, tsl, xla/tsl). With
--headers-only, the headers alone.
"""

import shutil
import sys
import zipfile
from pathlib import Path

LIBS = ("tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2")
HEADER_PREFIXES = (
    "tensorflow/include/tensorflow/c/",
    "tensorflow/include/tensorflow/core/platform/",
    "tensorflow/include/tensorflow/core/common_runtime/next_pluggable_device/c/",
    "tensorflow/include/tsl/",
    "tensorflow/include/xla/tsl/",
)


def main(wheel: str, deps: str, headers_only: bool = False) -> None:
    out = Path(deps)
    (out / "lib").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for lib in () if headers_only else LIBS:
            if lib not in names:
                sys.exit(f"{wheel} has no {lib}: is it a TensorFlow 2.12+ Linux wheel?")
            with z.open(lib) as src, open(out / "lib" / Path(lib).name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        count = 0
        for name in names:
            if name.startswith(HEADER_PREFIXES) and not name.endswith("/"):
                dest = out / "include" / name[len("tensorflow/include/") :]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(name) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                count += 1
        if count == 0:
            sys.exit(f"{wheel} has no C API headers under tensorflow/include/")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--headers-only"]
    if len(args) != 2:
        sys.exit(__doc__)
    main(args[0], args[1], headers_only="--headers-only" in sys.argv[1:])
