import DistillTensor
print(Gemm.backend)
