"""The pack's core: everything between the ComfyUI nodes / CLI and the Runflow client. No ComfyUI imports."""
