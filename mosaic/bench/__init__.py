"""Benchmarks of the library: ``python -m mosaic.bench {speed,parity,quality}``.

Commands (each a module with ``main(argv)``; results go to ``benchmarks/`` as CSV plus a markdown table):

- ``speed``: steps/s and peak memory of the library's MosaicKD iteration (``mosaic.train.iterate``)
  and its variants (bf16, channels_last, torch.compile) against a plain reference loop of the same
  networks and losses, in one run.
- ``parity``: whether the fast library path learns as well as the reference loop (accuracy over seeds).
- ``quality``: the paper's table: accuracy of each method on offline pairs, over seeds.

What they are built from:

- ``pairs``: the offline pairs, the speed presets, the CIFAR-100 spec (one definition each);
- ``variants``: variant names (``library+bf16+cl``, ``reference+w2``) and building one as a step;
- ``reference``: the reference loop, written the way the original code runs;
- ``timing``: worker processes, rounds, the phase clock, peak memory, machine info;
- ``reports``: the command line, markdown tables and CSV shared by the reports.
"""
