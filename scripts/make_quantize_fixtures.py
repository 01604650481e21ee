#!/usr/bin/env python3
"""Fixture for Distill's GGUF block encoders (Tests/DistillModelsTests/Fixtures/formats/quantize_reference.gguf):
a Float32 tensor "source" (Gaussian rows, some scaled up, a row of exact multiples that makes
rounding ties, a constant row) and the same values encoded by gguf-py's reference quantizers
(which reproduce ggml-quants.c's quantize_row_*_ref bit for bit) as Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
F16 and BF16, one tensor per type named after it.

    pip install gguf numpy
    python3 scripts/make_quantize_fixtures.py Tests/DistillModelsTests/Fixtures/formats/quantize_reference.gguf
"""
import sys

import gguf
import numpy as np
from gguf import quants

rng = np.random.default_rng(42)
x = rng.standard_normal((8, 256)).astype(np.float32)
x[1] *= 30
x[2] *= 1e-3
x[3] = np.arange(256, dtype=np.float32) / 8 - 16        # exact multiples: ties in x / d
x[4] = 0.5                                                # constant (Q4_1's max == min)
x[5, ::7] = -x[5, ::7] * 5                                # negative values of largest magnitude
w = gguf.GGUFWriter(sys.argv[1], arch="test")
w.add_tensor("source", x)
for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16"]:
    qt = getattr(gguf.GGMLQuantizationType, name)
    w.add_tensor(name, quants.quantize(x, qt), raw_dtype=qt)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", sys.argv[1])
