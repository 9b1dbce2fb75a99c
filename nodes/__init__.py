"""Runflow Multi Angles node pack: plain modules; only comfy.py and routes.py touch ComfyUI, lazily."""
