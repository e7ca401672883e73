"""Benchmarks (run from a source checkout): python -m bench.kernels"""
