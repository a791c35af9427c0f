"""The two install paths: requirements.txt (CPU, faiss-cpu) and requirements-gpu.txt (CUDA,
faiss-gpu) pin the same packages but for faiss."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def packages(name):
    with open(os.path.join(ROOT, name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


def test_gpu_requirements_swap_only_faiss():
    cpu, gpu = packages('requirements.txt'), packages('requirements-gpu.txt')
    assert [p for p in cpu if not p.startswith('faiss')] == \
        [p for p in gpu if not p.startswith('faiss')]
    assert [p for p in cpu if p.startswith('faiss')] == ['faiss-cpu>=1.8']
    assert [p for p in gpu if p.startswith('faiss')] == ['faiss-gpu==1.15.1']
