"""Runflow Multi Angles for ComfyUI. Importable without ComfyUI (the server routes register only inside it)."""

from .nodes.comfy.adapter import bind_user_dir as _bind_user_dir
from .nodes.comfy.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.comfy.routes import register as _register_routes
from .nodes.comfy.warmup import start as _warm_up

WEB_DIRECTORY = "./web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

_bind_user_dir()
_register_routes()
_warm_up()
