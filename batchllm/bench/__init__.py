"""The benchmark: ``python -m batchllm.bench``. Not part of the product's import graph."""
