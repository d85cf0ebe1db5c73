# Type stub of a compiled engine (src/_engine.pyx; _engine_avx2 and
# _engine_avx512 are the same module built for other instruction sets).
from typing import Any

ENGINE: Any  # the table of entry points, for _kernel.use
