"""Image files the runtime reads (suffixes Pillow decodes)."""

from __future__ import annotations

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
