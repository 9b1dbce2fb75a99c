"""Headless main job (``python -m nodes.cli``): render local images, folders, URLs or a CSV manifest from a grid of
camera poses and write files for review. Modules, one job each: args (command line), sources (files, folders,
manifest rows), plan (the job as windows of sources × poses; dry-run figures), progress (the live line), review
(files, sheets, turntables, index.html, summary), job (wiring, exit codes).
"""

from .args import build_parser
from .job import main

__all__ = ["build_parser", "main"]
