"""The Multi Angles API contract: exact strings and limits from Runflow's model page.

Saved workflows store these strings, so they never change once landed.
"""

MODEL_ID = "runflow/multi-angles"
RUNS_PATH = "/v1/models/runflow/multi-angles/runs"
DEFAULT_API_URL = "https://api.runflow.io"
PRICE_PER_RUN_USD = 0.20

# Order as on the model page; azimuth in degrees clockwise seen from above (front = 0).
VIEWS = (
    "front view",
    "front-right quarter view",
    "right side view",
    "back-right quarter view",
    "back view",
    "back-left quarter view",
    "left side view",
    "front-left quarter view",
)
VIEW_AZIMUTH = {view: i * 45 for i, view in enumerate(VIEWS)}

ANGLES = ("low-angle shot", "eye-level shot", "elevated shot", "high-angle shot")
ANGLE_ELEVATION = {"low-angle shot": -30, "eye-level shot": 0, "elevated shot": 30, "high-angle shot": 60}

SHOTS = ("close-up", "medium shot", "wide shot")
SHOT_DISTANCE = {"close-up": 0.6, "medium shot": 1.0, "wide shot": 1.8}

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")

DEFAULT_VIEW = "right side view"
DEFAULT_ANGLE = "eye-level shot"
DEFAULT_SHOT = "medium shot"
DEFAULT_ASPECT_RATIO = "1:1"

# Upload and input limits (runflow-api.md §5, §10.9).
MAX_UPLOAD_BYTES = 52_428_800  # 50 MiB, POST /v1/asset-uploads size_bytes cap
MAX_SIDE = 4096  # px per side; larger inputs fail with "image dimensions exceed 4096x4096"
MAX_URL_LENGTH = 2048  # callback_url cap stated on the batch schema
MAX_PROMPT_LENGTH = 2000  # ours: a camera-nudge phrase, not an essay; longer is surely a mistake
MAX_CLIENT_REF_LENGTH = 255

# Tooltips, from the model page's descriptions.
TOOLTIPS = {
    "image": "Source photo to re-render. A clear subject and even lighting work best. Each batch item is one run.",
    "image_url": "HTTPS URL of the source photo (use instead of image). A clear subject and even lighting work best.",
    "view": "Where the camera sits horizontally around the subject. \u201cfront view\u201d looks at the subject "
    "head-on; \u201cright side view\u201d rotates 90 degrees clockwise; \u201cback view\u201d looks from behind; "
    "and so on for the 8 cardinal + diagonal positions.",
    "angle": "Vertical camera tilt. \u201clow-angle shot\u201d looks up from ground level (-30 degrees); "
    "\u201ceye-level shot\u201d matches the subject\u2019s height; \u201celevated shot\u201d sits slightly above "
    "(30 degrees); \u201chigh-angle shot\u201d looks down from above (60 degrees).",
    "shot": "Camera distance. \u201cclose-up\u201d fills the frame with surface and texture detail; \u201cmedium "
    "shot\u201d is a balanced standard framing; \u201cwide shot\u201d pulls back to include context and environment.",
    "prompt": "Optional extra phrase appended to the camera pose to nudge the output (e.g. \u201ckeep the original "
    "lighting\u201d). Leave blank for default behavior.",
    "match_input_aspect": "Keep the output at the source image\u2019s aspect ratio. Default. Turn off to force a "
    "specific aspect_ratio.",
    "aspect_ratio": "Output aspect ratio. Only takes effect when match_input_aspect is off.",
    "callback_url": "Webhook URL - POSTed when the run reaches a terminal state. Advanced; leave empty.",
    "metadata": "Arbitrary key-value pairs attached to the run, as a JSON object. Advanced; leave empty.",
}

TERMINAL_OK = frozenset({"succeeded", "partial_succeeded"})
TERMINAL_FAILED = frozenset({"failed", "errored", "canceled", "cancelled"})
