"""Benchmarks of the library: ``python -m mosaic.bench speed`` and ``python -m mosaic.bench quality``.

- ``speed`` (``mosaic.bench.speed``): steps/s and peak memory of the library's MosaicKD iteration
  (``mosaic.game.step``) and its variants (bf16, channels_last, torch.compile) against a plain
  reference loop of the same networks and losses (``mosaic.bench.reference``), in one run.
- ``quality`` (``mosaic.bench.quality``): accuracy of each method over seeds.

Results go to ``benchmarks/`` as CSV plus a markdown table.
"""
