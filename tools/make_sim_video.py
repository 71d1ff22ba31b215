"""Regenerate the simulator's tiny sample videos (modelslab_widget/simulator/data/).

Dev-time only: needs `pip install imageio-ffmpeg` (a wheel that ships an ffmpeg binary). The
package itself never runs ffmpeg; it serves these committed files. Both are 1 s of ffmpeg's
test pattern at 64x64, 8 fps, and both play in Chromium: H.264 baseline in MP4 (moov first,
so a player can start from the first few KB) and VP9 in WebM.

    python tools/make_sim_video.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

DATA = Path(__file__).resolve().parents[1] / "modelslab_widget" / "simulator" / "data"
SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=8:duration=1"]
# bitexact and no metadata, so regenerating gives the same bytes and a clean diff
COMMON = ["-an", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]
ENCODINGS = {
    "sample.mp4": ["-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
                   "-preset", "veryslow", "-crf", "35", "-threads", "1",
                   "-movflags", "+faststart"],
    "sample.webm": ["-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "50", "-threads", "1"],
}


def main() -> None:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    DATA.mkdir(parents=True, exist_ok=True)
    for name, options in ENCODINGS.items():
        target = DATA / name
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *SOURCE,
                        *options, *COMMON, str(target)], check=True)
        print(f"{target}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    main()
