"""facegan's benchmarks, run from the repository root; results in benchmarks/results/*.json."""
