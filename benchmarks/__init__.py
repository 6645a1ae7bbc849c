"""The project's benchmarks: run each as ``python -m benchmarks.NAME`` from the repository root (README.md here)."""
