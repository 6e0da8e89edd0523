"""Rendering of VSB-mini's synthetic clips with Pillow: a caption revealed word by word over
time (the typographic attack) above a moving pictogram. Deterministic: the same scene always
gives the same pixels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 192, 128
FPS = 8
NUM_FRAMES = 48  # 6 seconds
_FIRST_WORD_FRAME = 6  # a short blank opening, so sparse sampling can miss early words
_WORD_SPACING_FRAMES = 10
_SHAPES = ("circle", "square", "triangle", "diamond", "cross", "bars", "star")


@dataclass(frozen=True)
class Scene:
    key: str  # stable file stem, e.g. "harm-explosives-0"
    words: tuple[str, ...]
    harmful: bool


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    # Pillow >= 10.1 bundles a scalable default font, so nothing depends on system fonts.
    return ImageFont.load_default(size=size)


def _palette(scene: Scene) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
    """(background, caption, pictogram) colours. Harmful scenes are dark with warm text,
    safe scenes light with dark text: the same style, a different mood."""
    h = _digest(scene.key)
    jitter = [(h >> (8 * i)) % 40 for i in range(3)]
    if scene.harmful:
        bg = (30 + jitter[0], 12 + jitter[1] // 2, 14 + jitter[2] // 2)
        return bg, (255, 214, 64), (220, 60, 50)
    bg = (196 + jitter[0], 214 + jitter[1], 200 + jitter[2] // 2)
    return bg, (24, 40, 70), (40, 120, 180)


def _caption_lines(words: list[str], font, max_width: int) -> list[str]:
    lines: list[str] = []
    for w in words:
        trial = f"{lines[-1]} {w}" if lines else w
        if lines and font.getlength(trial) <= max_width:
            lines[-1] = trial
        else:
            lines.append(w)
    return lines


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, color) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=color)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=color)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=color)
    elif shape == "bars":
        for i in range(3):
            x = cx - r + i * (2 * r / 3)
            draw.rectangle((x, cy - r + i * r / 3, x + r / 2, cy + r), fill=color)
    else:  # star
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r / 2.3
            ang = np.pi / 2 + k * np.pi / 5
            pts.append((cx + rad * np.cos(ang), cy - rad * np.sin(ang)))
        draw.polygon(pts, fill=color)


def render_scene(scene: Scene) -> list[np.ndarray]:
    """NUM_FRAMES RGB frames (HEIGHT, WIDTH, 3) uint8."""
    bg, text_color, shape_color = _palette(scene)
    h = _digest(scene.key)
    shape = _SHAPES[h % len(_SHAPES)]
    font = _font(17)
    lines_all = _caption_lines(list(scene.words), font, WIDTH - 16)
    speed = 1.2 + (h >> 16) % 5 * 0.3  # pictogram speed, px per frame: motion for static filters
    frames = []
    for f in range(NUM_FRAMES):
        shown = [w for i, w in enumerate(scene.words) if f >= _FIRST_WORD_FRAME + i * _WORD_SPACING_FRAMES]
        img = Image.new("RGB", (WIDTH, HEIGHT), bg)
        draw = ImageDraw.Draw(img)
        if shown:
            # Lay out the full caption once so revealed words never jump between frames.
            remaining = len(shown)
            for li, line in enumerate(lines_all):
                words = line.split(" ")
                visible = " ".join(words[: max(0, remaining)])
                remaining -= len(words)
                if visible:
                    draw.text((8, 6 + li * 21), visible, font=font, fill=text_color)
        x = 24 + (f * speed) % (WIDTH - 48)
        _draw_shape(draw, shape, x, HEIGHT - 30, 18, shape_color)
        frames.append(np.asarray(img, dtype=np.uint8))
    return frames
