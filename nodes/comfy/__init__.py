"""The only folder that touches ComfyUI (always lazily, so the pack imports without it)."""
