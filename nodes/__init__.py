"""Runflow Multi Angles node pack.

    runflow/  the Runflow client library (httpx + stdlib; knows nothing of ComfyUI, torch or the pack)
    sandbox/  a local emulator of Runflow's API (tests, demo, the CLI's --sandbox)
    core/     the pack's core: codec, spec, cache, journal, uploads, spend, runner (no ComfyUI)
    comfy/    everything that touches ComfyUI (lazily): node classes, adapter, status, routes, callbacks
    cli.py    the headless job: python -m nodes.cli

Dependencies point one way: comfy, cli -> core -> runflow; sandbox -> runflow.contract only.
"""
