"""Benchmarks of the compiled kernels (see pytransformer.bench.kernels).

Also reachable as `python -m bench.kernels` from a source checkout and as
`pytransformer bench kernels`. Speed goals live here, never in tests.
"""
