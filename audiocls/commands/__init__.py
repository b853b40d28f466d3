"""The commands beyond LightningCLI's: predict, explain, export, cv, ensemble, data. Each is a module with
``build_parser()`` and ``main(argv) -> int``; :mod:`audiocls.cli` holds the table.
"""
