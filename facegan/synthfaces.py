"""The built-in procedural face set: cartoon portraits drawn with PIL, the offline default data.

Each face is a pure function of (seed, index): its parameters come from its own RNG, so any
slice of the set can be rendered on its own and caches stay valid across runs. Faces are drawn
on a canvas SUPERSAMPLE times the target size and box-reduced, which antialiases every edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from facegan.errors import ConfigError

# Bump whenever the pictures change: dataset caches are keyed on it.
RENDERER_VERSION = "1"

# Discrete attributes and how many values each takes; render_faces reports them per face.
ATTRIBUTES: dict[str, int] = {
    "skin": 6,
    "hair_colour": 5,
    "hair_style": 3,
    "iris": 3,
    "mouth": 2,
    "glasses": 2,
    "beard": 3,
}

# Glasses and beards are less common than the other looks; unlisted attributes are uniform.
ATTRIBUTE_ODDS: dict[str, tuple[float, ...]] = {
    "glasses": (0.7, 0.3),
    "beard": (0.7, 0.15, 0.15),
}

ACCEPTED_SIZES = (16, 32, 64, 128, 256)
SUPERSAMPLE = 4

Colour = tuple[int, int, int]

SKIN_TONES: tuple[Colour, ...] = (
    (250, 220, 196),
    (238, 193, 158),
    (219, 167, 124),
    (190, 132, 92),
    (158, 104, 70),
    (118, 76, 50),
)
HAIR_COLOURS: tuple[Colour, ...] = (
    (28, 22, 20),  # black
    (82, 52, 32),  # brown
    (150, 78, 38),  # auburn
    (214, 176, 110),  # blonde
    (160, 158, 156),  # grey
)
IRIS_COLOURS: tuple[Colour, ...] = (
    (96, 58, 28),  # brown
    (64, 118, 178),  # blue
    (84, 128, 70),  # green
)
HAIR_BUZZ, HAIR_SHORT, HAIR_LONG = range(3)
BEARD_NONE, BEARD_MOUSTACHE, BEARD_FULL = range(3)

EYE_WHITE: Colour = (238, 236, 230)
PUPIL: Colour = (18, 14, 14)
MOUTH_INSIDE: Colour = (92, 30, 34)
TEETH: Colour = (240, 238, 228)
LIP_RED: Colour = (176, 72, 72)

# Head geometry in image-width units at scale 1, relative to the head centre.
HEAD_RX, HEAD_RY = 0.28, 0.355
EYE_DX, EYE_Y = 0.112, -0.035
EYE_RX, EYE_RY = 0.052, 0.027
BROW_Y = -0.098
NOSE_Y = 0.105
MOUTH_Y = 0.195
SOCKET, WHITE_MIX, HIGHLIGHT, BRIDGE = 0.5, 0.7, 0.25, 0.3
SOCK_DY, SOCK_X, SOCK_Y, BROW_W = 0.015, 2.0, 3.2, 0.025
BROW_DARK = 0.35
BROW_SHADE=0.75
LIP_DARK=0.65
BEARD_A=40
GLASS_BRIDGE=1.2
GLASS_X=1.6
GLASS_Y=2.3
EYE_DX = 0.112
EYE_Y = -0.02
EYE_RX = 0.065
EYE_RY = 0.0234
BROW_Y = -0.0935
NOSE_Y = 0.105
MOUTH_Y = 0.2021
HEAD_RX = 0.2606
HEAD_RY = 0.3692
SOCKET = 0.4286
WHITE_MIX = 0.8097
HIGHLIGHT = 0.1
BRIDGE = 0.4713
SOCK_X = 2.0755
SOCK_Y = 3.0287
SOCK_DY = 0.0191
BROW_W = 0.025


@dataclass(frozen=True)
class FaceParams:
    """Everything needed to draw one face: discrete attributes plus continuous jitter."""

    attributes: dict[str, int]
    background: Colour
    shirt: Colour
    frame: Colour
    centre: tuple[float, float]
    scale: float
    tilt_degrees: float
    light: float  # -1 lit from the left .. +1 lit from the right
    gaze: float  # iris offset as a fraction of the eye half-width
    smile_width: float


def render_faces(
    n: int, image_size: int = 64, seed: int = 0, start: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render faces start..start+n-1 as uint8 [n, S, S, 3] RGB plus their attribute arrays."""
    _check_request(n, image_size, start)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    attributes = {name: np.empty(n, dtype=np.int64) for name in ATTRIBUTES}
    for row in range(n):
        face = sample_face(np.random.default_rng([seed, start + row]))
        images[row] = draw_face(face, image_size)
        for name, value in face.attributes.items():
            attributes[name][row] = value
    return images, attributes


def _check_request(n: int, image_size: int, start: int) -> None:
    if image_size not in ACCEPTED_SIZES:
        raise ConfigError(
            f"image_size={image_size!r} is not supported; use a power of two from 16 to 256 "
            f"({', '.join(map(str, ACCEPTED_SIZES))})."
        )
    if n < 0 or start < 0:
        raise ConfigError(f"n={n} and start={start} must both be zero or more.")


def sample_face(rng: np.random.Generator) -> FaceParams:
    """Draw one face's parameters from its own RNG."""
    attributes = {
        name: int(rng.choice(count, p=ATTRIBUTE_ODDS.get(name))) for name, count in ATTRIBUTES.items()
    }
    return FaceParams(
        attributes=attributes,
        background=_random_colour(rng, 40, 225),
        shirt=_random_colour(rng, 20, 200),
        frame=(int(rng.integers(10, 70)),) * 3,
        centre=(0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.025, 0.03)),
        scale=rng.uniform(0.92, 1.08),
        tilt_degrees=rng.uniform(-6.0, 6.0),
        light=rng.uniform(-1.0, 1.0),
        gaze=rng.uniform(-0.25, 0.25),
        smile_width=rng.uniform(0.065, 0.085),
    )


def _random_colour(rng: np.random.Generator, low: int, high: int) -> Colour:
    red, green, blue = (int(v) for v in rng.integers(low, high, size=3))
    return red, green, blue


def draw_face(face: FaceParams, image_size: int) -> np.ndarray:
    """Draw one face on the supersampled canvas and reduce it to image_size."""
    painter = _Painter(face, image_size * SUPERSAMPLE)
    painter.paint()
    return np.asarray(painter.canvas.reduce(SUPERSAMPLE))


def _shade(colour: Colour, factor: float) -> Colour:
    red, green, blue = (min(255, int(c * factor)) for c in colour)
    return red, green, blue


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    red, green, blue = (int(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return red, green, blue


def _luminance(colour: Colour) -> float:
    red, green, blue = colour
    return 0.299 * red + 0.587 * green + 0.114 * blue


def _darker_than(colour: Colour, skin: Colour, ratio: float) -> Colour:
    """colour, dimmed if needed so its luminance is at most ratio times the skin's."""
    limit = ratio * _luminance(skin)
    return _shade(colour, min(1.0, limit / max(_luminance(colour), 1.0)))


@cache
def _soft_blob() -> Image.Image:
    """A 64x64 mask that fades smoothly from 255 at the centre to 0 at the inscribed ellipse."""
    axis = (np.arange(64) + 0.5) / 32.0 - 1.0
    radius = np.hypot(axis[None, :], axis[:, None])
    falloff = np.clip(1.0 - radius, 0.0, 1.0)
    smooth = falloff * falloff * (3.0 - 2.0 * falloff)
    return Image.fromarray((smooth * 255).astype(np.uint8), mode="L")


class _Painter:
    """Draws one face, back to front, in head-relative units (image widths at scale 1)."""

    def __init__(self, face: FaceParams, canvas_size: int) -> None:
        self.face = face
        self.size = canvas_size
        self.canvas = Image.new("RGB", (canvas_size, canvas_size), face.background)
        self.draw = ImageDraw.Draw(self.canvas)
        attrs = face.attributes
        self.skin = SKIN_TONES[attrs["skin"]]
        self.hair = HAIR_COLOURS[attrs["hair_colour"]]
        self.side = 1.0 if face.light >= 0 else -1.0

    # -- coordinate helpers -------------------------------------------------------------------

    def point(self, x: float, y: float) -> tuple[float, float]:
        cx, cy = self.face.centre
        s = self.face.scale
        return (cx + s * x) * self.size, (cy + s * y) * self.size

    def box(self, x: float, y: float, rx: float, ry: float) -> list[float]:
        (x0, y0), (x1, y1) = self.point(x - rx, y - ry), self.point(x + rx, y + ry)
        return [x0, y0, x1, y1]

    def length(self, value: float) -> int:
        return max(1, round(value * self.face.scale * self.size))

    def ellipse(self, x: float, y: float, rx: float, ry: float, fill: Colour) -> None:
        self.draw.ellipse(self.box(x, y, rx, ry), fill=fill)

    def blob(self, x: float, y: float, rx: float, ry: float, colour: Colour) -> None:
        """Blend colour in with a soft-edged ellipse: shading without hard outlines."""
        x0, y0, x1, y1 = (round(v) for v in self.box(x, y, rx, ry))
        mask = _soft_blob().resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
        self.canvas.paste(colour, (x0, y0, x1, y1), mask)

    # -- the face, back to front ------------------------------------------------------------

    def paint(self) -> None:
        style = self.face.attributes["hair_style"]
        if style == HAIR_LONG:
            self.long_hair_back()
        self.neck()
        if style == HAIR_SHORT:
            self.ellipse(0.0, -0.05, HEAD_RX + 0.025, HEAD_RY + 0.015, self.hair)
        if style != HAIR_LONG:
            self.ears()
        self.head()
        self.eyes()
        self.nose()
        self.beard()
        self.mouth()
        self.hair_front(style)
        self.eyebrows()
        if self.face.attributes["glasses"]:
            self.glasses()
        self.tilt()
        self.shoulders()

    def long_hair_back(self) -> None:
        self.ellipse(0.0, -0.04, HEAD_RX + 0.06, HEAD_RY + 0.045, self.hair)
        top_left = self.point(-HEAD_RX - 0.06, -0.04)
        bottom_right = self.point(HEAD_RX + 0.06, 0.42)
        self.draw.rectangle([*top_left, *bottom_right], fill=self.hair)

    def neck(self) -> None:
        top_left = self.point(-0.11, 0.15)
        bottom_right = self.point(0.11, 0.7)
        self.draw.rectangle([*top_left, *bottom_right], fill=_shade(self.skin, 0.78))

    def ears(self) -> None:
        for side in (-1.0, 1.0):
            colour = self.skin if side == self.side else _shade(self.skin, 0.86)
            self.ellipse(side * HEAD_RX, 0.0, 0.04, 0.065, colour)

    def head(self) -> None:
        """A darker oval with a soft lit patch shifted toward the light: a rounded look."""
        self.ellipse(0.0, 0.0, HEAD_RX, HEAD_RY, _shade(self.skin, 0.84))
        shift = 0.045 * self.face.light
        self.blob(shift, -0.02, HEAD_RX * 0.98, HEAD_RY * 0.98, _mix(self.skin, (255, 236, 220), HIGHLIGHT))

    def eyes(self) -> None:
        iris = IRIS_COLOURS[self.face.attributes["iris"]]
        socket = _shade(self.skin, SOCKET)
        white = _mix(EYE_WHITE, socket, WHITE_MIX)
        for side in (-1.0, 1.0):
            x = side * EYE_DX
            # Dark sockets and a lighter nose bridge are what the Haar cascade keys on.
            self.blob(x, EYE_Y - SOCK_DY, EYE_RX * SOCK_X, EYE_RY * SOCK_Y, socket)
            self.ellipse(x, EYE_Y, EYE_RX, EYE_RY, white)
            iris_x = x + self.face.gaze * EYE_RX
            self.ellipse(iris_x, EYE_Y, EYE_RY * 0.95, EYE_RY * 0.95, iris)
            self.ellipse(iris_x, EYE_Y, EYE_RY * 0.45, EYE_RY * 0.45, PUPIL)
            self.ellipse(iris_x + 0.008, EYE_Y - 0.008, 0.005, 0.005, EYE_WHITE)
            self.draw.arc(
                self.box(x, EYE_Y, EYE_RX, EYE_RY),
                190,
                350,
                fill=_shade(self.skin, 0.35),
                width=self.length(0.01),
            )
        self.blob(0.0, 0.01, 0.032, 0.1, _mix(self.skin, (255, 236, 220), BRIDGE))

    def nose(self) -> None:
        self.blob(-self.side * 0.03, 0.05, 0.022, 0.07, _shade(self.skin, 0.72))
        self.blob(0.0, NOSE_Y + 0.012, 0.06, 0.025, _shade(self.skin, 0.7))
        nostril = _shade(self.skin, 0.45)
        for side in (-1.0, 1.0):
            self.ellipse(side * 0.02, NOSE_Y, 0.011, 0.007, nostril)

    def mouth(self) -> None:
        lips = _darker_than(_mix(self.skin, LIP_RED, 0.55), self.skin, LIP_DARK)
        width = self.face.smile_width
        if self.face.attributes["mouth"]:
            box = self.box(0.0, MOUTH_Y - 0.01, width, 0.05)
            self.draw.chord(box, 0, 180, fill=MOUTH_INSIDE)
            self.draw.chord(self.box(0.0, MOUTH_Y - 0.01, width * 0.9, 0.02), 0, 180, fill=TEETH)
            self.draw.arc(box, 0, 180, fill=lips, width=self.length(0.012))
        else:
            self.ellipse(0.0, MOUTH_Y, width, 0.02, lips)
            line = [*self.point(-width, MOUTH_Y), *self.point(width, MOUTH_Y)]
            self.draw.line(line, fill=MOUTH_INSIDE, width=self.length(0.008))

    def beard(self) -> None:
        kind = self.face.attributes["beard"]
        if kind == BEARD_NONE:
            return
        if kind == BEARD_FULL:
            self.draw.chord(self.box(0.0, 0.0, HEAD_RX, HEAD_RY), BEARD_A, 180 - BEARD_A, fill=self.hair)
        moustache = self.box(0.0, NOSE_Y + 0.05, 0.085, 0.03)
        self.draw.chord(moustache, 180, 360, fill=_shade(self.hair, 0.9))

    def hair_front(self, style: int) -> None:
        if style == HAIR_BUZZ:
            colour = _mix(self.skin, self.hair, 0.45)
            self.draw.chord(self.box(0.0, 0.0, HEAD_RX, HEAD_RY), 212, 328, fill=colour)
            return
        box = self.box(0.0, -0.03, HEAD_RX + 0.015, HEAD_RY + 0.01)
        self.draw.chord(box, 200, 340, fill=self.hair)
        if style == HAIR_LONG:
            # A side parting: a sweep of hair over one temple.
            sweep = self.box(self.side * 0.12, -0.22, 0.2, 0.12)
            self.draw.chord(sweep, 120, 360, fill=self.hair)

    def eyebrows(self) -> None:
        colour = _darker_than(_shade(self.hair, BROW_SHADE), self.skin, BROW_DARK)
        for side in (-1.0, 1.0):
            box = self.box(side * EYE_DX, BROW_Y + 0.035, EYE_RX * 1.35, 0.045)
            self.draw.arc(box, 200, 340, fill=colour, width=self.length(BROW_W))

    def glasses(self) -> None:
        width = self.length(0.012)
        for side in (-1.0, 1.0):
            box = self.box(side * EYE_DX, EYE_Y, EYE_RX * GLASS_X, EYE_RY * GLASS_Y)
            self.draw.rounded_rectangle(box, radius=self.length(0.03), outline=self.face.frame,
                                        width=width)
        bridge_y = EYE_Y - EYE_RY * GLASS_BRIDGE
        bridge = [*self.point(-EYE_DX + EYE_RX * GLASS_X, bridge_y), *self.point(EYE_DX - EYE_RX * GLASS_X, bridge_y)]
        self.draw.line(bridge, fill=self.face.frame, width=width)

    def tilt(self) -> None:
        """Rotate the head about its centre; the shoulders are drawn afterwards and stay level."""
        self.canvas = self.canvas.rotate(
            self.face.tilt_degrees,
            resample=Image.Resampling.NEAREST,
            center=self.point(0.0, 0.0),
            fillcolor=self.face.background,
        )
        self.draw = ImageDraw.Draw(self.canvas)

    def shoulders(self) -> None:
        cx = self.face.centre[0]
        chest = [(cx - 0.52) * self.size, 0.93 * self.size, (cx + 0.52) * self.size,
                 1.45 * self.size]
        self.draw.ellipse(chest, fill=self.face.shirt)
        collar = self.box(0.0, 0.4, 0.11, 0.08)
        self.draw.chord(collar, 0, 180, fill=_shade(self.skin, 0.74))
