"""compiler/: how voxc builds -- build graph, stages, cache, parity, reports and the CLI."""
