"""VSB-mini: the embedded synthetic benchmark in the real format, the default everywhere."""

from videosafety.data.vsb_mini.build import VSB_MINI_VERSION, build_vsb_mini, default_vsb_mini

__all__ = ["VSB_MINI_VERSION", "build_vsb_mini", "default_vsb_mini"]
